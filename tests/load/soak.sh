#!/usr/bin/env bash
# Soak: `fluxgate serve --no-exporter` over TLS on loopback at a fixed request rate for a fixed
# time, then checks that no request failed and that memory did not grow.
#
#   tests/load/soak.sh                      10 minutes at 500 requests/s
#   SOAK_SECONDS=60 tests/load/soak.sh      the bounded CI run
#
# Settings (environment): SOAK_SECONDS (600), SOAK_RATE (500 requests/s), SOAK_CONNECTIONS (4
# HTTP/2 connections, 4 streams each, as kube-apiserver multiplexes its webhook calls),
# SOAK_WARMUP_SECONDS (10; RSS is compared from the end of the warm-up), SOAK_RSS_GROWTH_KIB
# (8192), SOAK_PORT (18443), SOAK_OUT (a file that also receives the summary).
#
# Why 8 MiB: after warm-up, allocator arenas, TLS and HTTP/2 buffers have reached their working
# size and RSS moves by well under 1 MiB between samples. A leak of 100 bytes per request, the
# smallest worth finding (one forgotten String or map entry), adds 29 MiB over the default 10
# minutes at 500 requests/s, and 3 MiB over the 60-second CI run, so the threshold is under the
# leak it must catch in the long run and over the noise in both.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_RATE="${SOAK_RATE:-500}"
SOAK_CONNECTIONS="${SOAK_CONNECTIONS:-4}"
SOAK_WARMUP_SECONDS="${SOAK_WARMUP_SECONDS:-10}"
SOAK_RSS_GROWTH_KIB="${SOAK_RSS_GROWTH_KIB:-8192}"
SOAK_PORT="${SOAK_PORT:-18443}"
(( SOAK_SECONDS > SOAK_WARMUP_SECONDS )) || die "SOAK_SECONDS must exceed SOAK_WARMUP_SECONDS"

ensure_oha
build_release
make_workdir

log "soak: $SOAK_RATE requests/s for ${SOAK_SECONDS}s ($(machine_load))"
start_server fluxgate "$SOAK_PORT"
pid="$SERVER_PID"
rss_idle="$(rss_kib "$pid")"

# RSS every 5 s while the load runs.
: >"$WORK/rss.tsv"
(
  start=$SECONDS
  while alive "$pid" && (( SECONDS - start <= SOAK_SECONDS + 5 )); do
    printf '%s\t%s\n' "$((SECONDS - start))" "$(rss_kib "$pid")" >>"$WORK/rss.tsv"
    sleep 5
  done
) &
sampler=$!

# A request count rather than a duration, so no request is cut off at the deadline; `timeout`
# bounds the wall time whatever happens.
OHA_PIN="timeout $((SOAK_SECONDS * 2 + 60))" oha_run "$WORK/soak.json" "$SOAK_PORT" --http2 \
  -c "$SOAK_CONNECTIONS" -p 4 -q "$SOAK_RATE" --latency-correction \
  -n "$((SOAK_RATE * SOAK_SECONDS))" -t 10s || die "oha failed or overran"
rss_end="$(rss_kib "$pid")"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
stop_server "$pid"

python3 - "$WORK/soak.json" "$WORK/rss.tsv" "$rss_idle" "$rss_end" "$SOAK_WARMUP_SECONDS" \
  "$SOAK_RSS_GROWTH_KIB" "$SOAK_RATE" "$SOAK_SECONDS" "$(machine_load)" <<'PY' | tee -a "${SOAK_OUT:-/dev/null}"
import json, sys
result, rss_file, idle, end, warmup, limit, rate, seconds, load = sys.argv[1:]
idle, end, warmup, limit = int(idle), int(end), int(warmup), int(limit)
rate, seconds = int(rate), int(seconds)
d = json.load(open(result))
codes = d["statusCodeDistribution"]
errors = d["errorDistribution"]
total = sum(codes.values()) + sum(errors.values())
ok = codes.get("200", 0)
p = d["latencyPercentiles"]
ms = lambda k: p[k] * 1000
samples = [tuple(map(int, line.split())) for line in open(rss_file) if line.strip()]
after_warmup = [kib for t, kib in samples if t >= warmup]
warm = after_warmup[0] if after_warmup else end
peak = max([end] + after_warmup)
growth = end - warm
print(f"soak: {seconds}s at {rate} requests/s over HTTP/2 ({load})")
print(f"  requests {total}, 200 OK {ok}, other statuses {total - ok - sum(errors.values())}, "
      f"errors {sum(errors.values())} {dict(errors) if errors else ''}")
print(f"  achieved {d['summary']['requestsPerSec']:.1f} requests/s")
print(f"  latency ms: p50 {ms('p50'):.3f}  p90 {ms('p90'):.3f}  p99 {ms('p99'):.3f}  "
      f"p99.9 {ms('p99.9'):.3f}  max {d['summary']['slowest'] * 1000:.3f}")
print(f"  RSS KiB: idle {idle}, after {warmup}s warm-up {warm}, end {end}, peak {peak}, "
      f"growth after warm-up {growth:+d} (limit {limit})")
failed = []
if ok != total:
    failed.append(f"{total - ok} requests failed")
if ok < 0.95 * rate * seconds:
    failed.append(f"only {ok} requests answered, expected about {rate * seconds}")
if growth > limit:
    failed.append(f"RSS grew by {growth} KiB after warm-up")
if failed:
    print("SOAK FAILED: " + "; ".join(failed))
    sys.exit(1)
print("soak passed")
PY
