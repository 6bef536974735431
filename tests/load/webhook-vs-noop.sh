#!/usr/bin/env bash
# fluxgate against a do-nothing handler on the same HTTPS stack (examples/bench_server.rs), side by
# side in one run: the server pinned to one core (taskset -c 0), the load generator to the other.
#
# For each kind and run: startup (spawn to first 200), RSS idle and under load, throughput with
# no rate limit (HTTP/2 and HTTP/1.1), the server's CPU time per answered request during those
# runs (user + system, from /proc: unlike throughput it hardly moves when neighbours take the
# machine's cores, and 1 / CPU per request is the throughput one core would reach), and latency
# percentiles at a fixed rate over HTTP/2. Kinds
# alternate order between runs so drift on a shared machine hits both alike; the summary gives
# medians, each kind's ratio to the do-nothing baseline and, with "floor" in the kinds, fluxgate's
# ratio to the floor.
#
#   tests/load/webhook-vs-noop.sh                       5 runs of 10 s per measurement
#   BENCH_RUNS=3 BENCH_SECONDS=5 tests/load/webhook-vs-noop.sh
#
# Settings (environment): BENCH_RUNS (5), BENCH_SECONDS (10), BENCH_RATE (2000 requests/s for the
# latency run), BENCH_KINDS ("fluxgate noop"; add "router" for the admission router without
# logging, "floor" for the baseline that parses each body into a serde_json::Value and serialises
# it back, the least any webhook that reads the review as JSON does), BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_PORT (19443), BENCH_OUT (file for the
# summary), BENCH_ENFORCE=1 to exit non-zero when fluxgate's p99 is over 1.3x the baseline's or
# its throughput under 80% of it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BENCH_RUNS="${BENCH_RUNS:-5}"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_RATE="${BENCH_RATE:-2000}"
BENCH_KINDS="${BENCH_KINDS:-fluxgate noop}"
BENCH_SERVER_CPU="${BENCH_SERVER_CPU:-0}"
BENCH_CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
BENCH_PORT="${BENCH_PORT:-19443}"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

ensure_oha
build_release
make_workdir
OHA_PIN="timeout $((BENCH_SECONDS * 3 + 60)) taskset -c $BENCH_CLIENT_CPU"
log "machine: $(nproc) cores; $(machine_load)"
load_before="$(machine_load)"

printf 'run\tkind\tstartup_ms\trss_idle_kib\trss_load_kib\th2_rps\th1_rps\th2_cpu_us\th1_cpu_us\tp50_ms\tp90_ms\tp99_ms\tp999_ms\tfailed\n' >"$WORK/results.tsv"

# peak_rss PID SECONDS: highest VmRSS seen while sampling every 0.25 s.
peak_rss() {
  local pid="$1" until=$((SECONDS + $2)) peak=0 kib
  while (( SECONDS < until )) && alive "$pid"; do
    kib="$(rss_kib "$pid")"
    (( kib > peak )) && peak=$kib
    sleep 0.25
  done
  echo "$peak"
}

measure() {
  local run="$1" kind="$2" port="$3"
  start_server "$kind" "$port" "$BENCH_SERVER_CPU"
  local pid="$SERVER_PID" startup="$STARTUP_MS"
  sleep 1
  local idle
  idle="$(rss_kib "$pid")"

  peak_rss "$pid" "$BENCH_SECONDS" >"$WORK/peak" &
  local sampler=$!
  local cpu0 cpu1 cpu2
  cpu0="$(cpu_ticks "$pid")"
  oha_run "$WORK/$kind-$run-h2.json" "$port" --http2 -c 4 -p 16 -z "${BENCH_SECONDS}s" -t 10s
  cpu1="$(cpu_ticks "$pid")"
  wait "$sampler"
  oha_run "$WORK/$kind-$run-h1.json" "$port" -c 32 -z "${BENCH_SECONDS}s" -t 10s
  cpu2="$(cpu_ticks "$pid")"
  oha_run "$WORK/$kind-$run-lat.json" "$port" --http2 -c 4 -p 4 -q "$BENCH_RATE" \
    --latency-correction -n "$((BENCH_RATE * BENCH_SECONDS))" -t 10s
  stop_server "$pid"

  python3 - "$WORK" "$kind" "$run" "$startup" "$idle" "$(cat "$WORK/peak")" \
    "$((cpu1 - cpu0))" "$((cpu2 - cpu1))" "$(getconf CLK_TCK)" >>"$WORK/results.tsv" <<'PY'
import json, sys
work, kind, run, startup, idle, peak, h2_ticks, h1_ticks, hz = sys.argv[1:]
def load(name):
    return json.load(open(f"{work}/{kind}-{run}-{name}.json"))
def ok_rps(d):
    return d["statusCodeDistribution"].get("200", 0) / d["summary"]["total"]
def failed(d):
    # Requests cut off by the end of a timed run are the generator's, not the server's.
    errors = {k: v for k, v in d["errorDistribution"].items() if k != "aborted due to deadline"}
    bad = sum(v for k, v in d["statusCodeDistribution"].items() if k != "200")
    return bad + sum(errors.values())
def cpu_us(ticks, d):
    return int(ticks) * 1e6 / int(hz) / max(d["statusCodeDistribution"].get("200", 0), 1)
h2, h1, lat = load("h2"), load("h1"), load("lat")
p = {k: v * 1000 for k, v in lat["latencyPercentiles"].items()}
print("\t".join(map(str, [run, kind, startup, idle, peak, f"{ok_rps(h2):.0f}", f"{ok_rps(h1):.0f}",
    f"{cpu_us(h2_ticks, h2):.1f}", f"{cpu_us(h1_ticks, h1):.1f}",
    f"{p['p50']:.3f}", f"{p['p90']:.3f}", f"{p['p99']:.3f}", f"{p['p99.9']:.3f}",
    failed(h2) + failed(h1) + failed(lat)])))
PY
}

kinds=($BENCH_KINDS)
for run in $(seq 1 "$BENCH_RUNS"); do
  order=("${kinds[@]}")
  if (( run % 2 == 0 )); then
    order=()
    for (( i = ${#kinds[@]} - 1; i >= 0; i-- )); do order+=("${kinds[$i]}"); done
  fi
  for kind in "${order[@]}"; do
    log "run $run/$BENCH_RUNS: $kind"
    measure "$run" "$kind" "$BENCH_PORT"
  done
done

python3 - "$WORK/results.tsv" "$BENCH_RATE" "$BENCH_SECONDS" "$BENCH_RUNS" "$load_before" \
  "$(machine_load)" "${BENCH_ENFORCE:-0}" <<'PY' | tee -a "${BENCH_OUT:-/dev/null}"
import csv, statistics, sys
path, rate, seconds, runs, load_before, load_after, enforce = sys.argv[1:]
rows = list(csv.DictReader(open(path), delimiter="\t"))
cols = ["startup_ms", "rss_idle_kib", "rss_load_kib", "h2_rps", "h1_rps", "h2_cpu_us", "h1_cpu_us",
        "p50_ms", "p90_ms", "p99_ms", "p999_ms"]
kinds = list(dict.fromkeys(r["kind"] for r in rows))
med = {k: {c: statistics.median(float(r[c]) for r in rows if r["kind"] == k) for c in cols}
       for k in kinds}
failed = {k: sum(int(r["failed"]) for r in rows if r["kind"] == k) for k in kinds}
print(f"{runs} runs, {seconds} s per measurement, latency at {rate} requests/s (HTTP/2); "
      f"server on 1 core")
print(f"machine load before: {load_before}; after: {load_after}")
print()
# Ratio columns: every other kind against noop, and fluxgate against the JSON floor.
pairs = [(k, "noop") for k in kinds if k != "noop" and "noop" in kinds]
if "fluxgate" in kinds and "floor" in kinds:
    pairs.append(("fluxgate", "floor"))
print("| median | " + " | ".join(kinds) + " |" + "".join(f" {a} / {b} |" for a, b in pairs))
print("|---|" + "---|" * len(kinds) + "---|" * len(pairs))
labels = {"startup_ms": "startup to first 200 (ms)", "rss_idle_kib": "RSS idle (MiB)",
          "rss_load_kib": "RSS under load (MiB)", "h2_rps": "throughput HTTP/2 (req/s)",
          "h1_rps": "throughput HTTP/1.1 (req/s)",
          "h2_cpu_us": "server CPU per request, HTTP/2 (µs)",
          "h1_cpu_us": "server CPU per request, HTTP/1.1 (µs)", "p50_ms": "p50 (ms)", "p90_ms": "p90 (ms)",
          "p99_ms": "p99 (ms)", "p999_ms": "p99.9 (ms)"}
for c in cols:
    scale = 1 / 1024 if c.endswith("kib") else 1
    cells = [f"{med[k][c] * scale:.1f}" if scale != 1 or c.endswith(("rps", "_us"))
             else f"{med[k][c]:.3f}"
             for k in kinds]
    ratio = "".join(f" {med[a][c] / med[b][c]:.2f} |" if med[b][c] else " |" for a, b in pairs)
    print(f"| {labels[c]} | " + " | ".join(cells) + " |" + ratio)
print("| failed requests (all runs) | " + " | ".join(str(failed[k]) for k in kinds) + " |"
      + " |" * len(pairs))
print()
print("per run:")
for r in rows:
    print("  " + "  ".join(f"{k}={r[k]}" for k in r))
bad = [k for k in kinds if failed[k]]
missed = []
if "noop" in kinds and "fluxgate" in kinds:
    p99 = med["fluxgate"]["p99_ms"] / med["noop"]["p99_ms"]
    tp = med["fluxgate"]["h2_rps"] / med["noop"]["h2_rps"]
    cpu = med["noop"]["h2_cpu_us"] / med["fluxgate"]["h2_cpu_us"]
    print(f"\ntargets: p99 ratio {p99:.3f} (target <= 1.30): {'met' if p99 <= 1.3 else 'MISSED'}; "
          f"throughput ratio {tp:.3f} (target >= 0.80): {'met' if tp >= 0.8 else 'MISSED'}; "
          f"one-core throughput from CPU per request (HTTP/2) {cpu:.2f}")
    if p99 > 1.3:
        missed.append("p99")
    if tp < 0.8:
        missed.append("throughput")
# One-core throughput from CPU per request: the ratio that neighbours on the machine disturb least.
for a, b in pairs:
    print(f"{a} / {b}: throughput HTTP/2 {med[a]['h2_rps'] / med[b]['h2_rps']:.2f}, "
          f"HTTP/1.1 {med[a]['h1_rps'] / med[b]['h1_rps']:.2f}; one-core throughput from CPU per "
          f"request HTTP/2 {med[b]['h2_cpu_us'] / med[a]['h2_cpu_us']:.2f}, "
          f"HTTP/1.1 {med[b]['h1_cpu_us'] / med[a]['h1_cpu_us']:.2f}; "
          f"p99 {med[a]['p99_ms'] / med[b]['p99_ms']:.2f}")
if "floor" in kinds and "noop" in kinds:
    fl = med["noop"]["h2_cpu_us"] / med["floor"]["h2_cpu_us"]
    print(f"the JSON floor alone reaches {fl:.2f} of the do-nothing baseline's one-core throughput "
          f"(HTTP/2){': below 0.80, so no webhook that parses the review as JSON can meet the throughput target on this stack' if fl < 0.8 else ''}")
if bad:
    print(f"FAILED requests for {bad}")
    sys.exit(1)
if missed and enforce == "1":
    sys.exit(1)
PY
