#!/usr/bin/env bash
# The exporter at scale: fluxgate's exporter and kube-state-metrics (Flux's custom-resource-state
# config, `gotk_resource_info`) one after the other against the same SIZE GitRepositories on a
# real kube-apiserver + etcd, and a table of what each cost.
#
#   tests/load/exporter/run.sh SIZE          e.g. 1000, 10000, 100000
#
# For each exporter and run: RSS (/proc/PID/status VmRSS, VmHWM), CPU (/proc/PID/stat utime+stime)
# until its first complete scrape, seconds until /readyz answers 200 (fluxgate) and until /metrics
# holds every object, and the latency from a status write (through the status subresource) to
# /metrics showing it (p50/p99). Also what the API server spent serving each one's initial sync,
# and the requests each made (from the audit log).
#
# The control plane lives in FLUXGATE_E2E_DIR (default target/exporter-bench) and its data is kept
# after the run (KEEP=1 down), so the next run of the same size and layout reuses the population
# instead of creating it again: 100 000 objects take a while. BENCH_KEEP=0 wipes it.
#
# Settings (environment):
#   BENCH_NAMESPACES      namespaces the objects are spread over (SIZE/10, at least 1)
#   BENCH_RUNS            runs per exporter, alternating which goes first (3; 0 only creates
#                         the population, e.g. to build the 100 000 one ahead of time)
#   BENCH_PARALLEL        requests in flight while populating (64)
#   BENCH_PROBE_SAMPLES   status writes timed against fluxgate (200)
#   BENCH_KSM_PROBE_SAMPLES   the same against kube-state-metrics (50; each scrape is large)
#   BENCH_SETTLE_SECONDS  pause after the first complete scrape before the settled RSS (10)
#   BENCH_READY_STATE     fluxgate's `state` label for Ready=True (ready)
#   BENCH_KSM_POLL        how often /metrics of kube-state-metrics is checked for completeness
#                         (1s; every check is a full scrape, whose CPU is reported)
#   BENCH_ONLY            fluxgate or ksm: measure only that one
#   BENCH_KEEP            1: keep the control plane's data for the next run (1)
#   BENCH_REV             measure this commit (e.g. HEAD) instead of the work tree: it is
#                         exported with `git archive` and built apart
#   BENCH_BREAKER         1: instead of the comparison, one run of fluxgate with its host circuit
#                         breaker on (`--breaker=true`, github.com only), meeting the population as
#                         an outage of github.com: what it costs to sync, to quarantine, and to
#                         hold the host open for BENCH_BREAKER_OPEN_SECONDS (120); the
#                         quarantine changes the objects, so the population is built again after
#   BENCH_RELEASE_RATE    with BENCH_BREAKER=1: after the open phase, github.com comes back and a
#                         simulated source-controller (examples/simulated_source_controller.rs)
#                         reconciles what the breaker releases at this many GitRepositories a
#                         second; measures the release until every quarantined one is Ready.
#                         github.com's URLs are http:// here and fluxgate's HTTP proxy setting
#                         points at the simulation's loopback Git host stand-in, which answers
#                         only once the release phase starts (refused until then)
#   BENCH_RELEASE_TIMEOUT bound of the release phase (40m)
#   BENCH_PREQUARANTINED  1: with BENCH_BREAKER=1, github.com's GitRepositories that the breaker
#                         would quarantine are created quarantined already (its marks and
#                         spec.suspend), and the breaker takes the open host over from the
#                         marks on start instead of quarantining for minutes (0)
# Output: the table on stdout; raw samples, logs and results.tsv in $FLUXGATE_E2E_DIR/results/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if ! { (($# == 1)) && [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0)); }; then
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
SIZE="$1"
NAMESPACES="${BENCH_NAMESPACES:-$((SIZE / 10 > 0 ? SIZE / 10 : 1))}"
RUNS="${BENCH_RUNS:-3}"
PARALLEL="${BENCH_PARALLEL:-64}"
PROBE_SAMPLES="${BENCH_PROBE_SAMPLES:-200}"
KSM_PROBE_SAMPLES="${BENCH_KSM_PROBE_SAMPLES:-50}"
SETTLE="${BENCH_SETTLE_SECONDS:-10}"
READY_STATE="${BENCH_READY_STATE:-ready}"
KSM_POLL="${BENCH_KSM_POLL:-1s}"
ONLY="${BENCH_ONLY:-}"
BREAKER="${BENCH_BREAKER:-0}"
BREAKER_OPEN_SECONDS="${BENCH_BREAKER_OPEN_SECONDS:-120}"
KEEP_DATA="${BENCH_KEEP:-1}"
RELEASE_RATE="${BENCH_RELEASE_RATE:-}"
RELEASE_TIMEOUT="${BENCH_RELEASE_TIMEOUT:-40m}"
PROBE_OBJECTS=10
# Prometheus' Accept header (2.49 and later): /metrics answers OpenMetrics to it.
PROMETHEUS_ACCEPT='application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
TOTAL=$((SIZE + PROBE_OBJECTS))
# Bounds every wait: a sync slower than this is a failure worth seeing, not a hang.
WAIT_TIMEOUT="${BENCH_WAIT_TIMEOUT:-30m}"

export FLUXGATE_E2E_DIR="${FLUXGATE_E2E_DIR:-$repo/target/exporter-bench}"
CONTROLPLANE="$repo/tests/e2e/controlplane.sh"
STATE="$FLUXGATE_E2E_DIR"
POPULATION_MARKER="$STATE/population"
OUT="$STATE/results/$SIZE-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
TICK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------------------------------------
# build

if [[ -n "${BENCH_REV:-}" ]]; then
  # A commit, exported apart from the work tree, so edits in progress there are not measured.
  rev="$(git -C "$repo" rev-parse --short "$BENCH_REV^{commit}")"
  src="$STATE/src-$rev"
  if [[ ! -f "$src/Cargo.toml" ]]; then
    rm -rf "$src"
    mkdir -p "$src"
    git -C "$repo" archive "$rev" | tar -x -C "$src"
  fi
  # The tool itself may be newer than the commit measured. Copied only when it differs: a fresh
  # mtime alone would relink it on every run.
  cmp -s "$repo/examples/populate.rs" "$src/examples/populate.rs" \
    || cp "$repo/examples/populate.rs" "$src/examples/populate.rs"
  build_dir="$src" target_dir="$STATE/target"
else
  build_dir="$repo" target_dir="$repo/target"
fi
log "building fluxgate and the populate tool (release) in $build_dir"
(cd "$build_dir" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --bin fluxgate \
  --example populate --example simulated_source_controller >&2)
FLUXGATE="$target_dir/release/fluxgate"
POPULATE="$target_dir/release/examples/populate"
SIMULATION="$target_dir/release/examples/simulated_source_controller"
KSM_CONFIG="$here/ksm-gitrepository.yaml"
# Only the comparison runs kube-state-metrics.
if [[ "$BREAKER" != 1 && "$ONLY" != fluxgate ]]; then
  KSM="$("$here/build-ksm.sh")"
fi

# ---------------------------------------------------------------------------------------------
# process probes

now_ms() { date +%s%3N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
secs() { awk -v t="$1" -v h="$TICK" 'BEGIN { printf "%.2f", t / h }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# host_ticks: "busy total" jiffies of all CPUs, from one read of /proc/stat (two reads a few
# milliseconds apart can make a short window look more than 100 % busy).
host_ticks() {
  awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $2 + $3 + $4 + $7 + $8, t }' /proc/stat
}
# busy_pct "BUSY0 TOTAL0": percentage of the host's CPU busy since that reading.
busy_pct() {
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$1"
  read -r b1 t1 <<<"$(host_ticks)"
  awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * b / t : 0) }'
}
free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# sample PID FILE: elapsed ms, VmRSS, VmHWM (KiB) and CPU ticks every 0.5 s while PID lives,
# at most 2 hours.
sample() {
  local pid="$1" file="$2" t0 i
  t0="$(now_ms)"
  printf 'ms\trss_kib\thwm_kib\tcpu_ticks\n' >"$file"
  for ((i = 0; i < 14400; i++)); do
    [[ -r "/proc/$pid/status" ]] || break
    printf '%s\t%s\t%s\t%s\n' "$(($(now_ms) - t0))" "$(status_kib "$pid" VmRSS)" \
      "$(status_kib "$pid" VmHWM)" "$(cpu_ticks "$pid")" >>"$file"
    sleep 0.5
  done
}

EXPORTER_PID=""
SAMPLER_PID=""
stop_exporter() {
  if [[ -n "$EXPORTER_PID" ]]; then
    kill -TERM "$EXPORTER_PID" 2>/dev/null || true
    wait "$EXPORTER_PID" 2>/dev/null || true
    EXPORTER_PID=""
  fi
  if [[ -n "$SAMPLER_PID" ]]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
  fi
}

finish() {
  local rc=$?
  stop_exporter
  if [[ "$KEEP_DATA" == 1 ]]; then
    KEEP=1 "$CONTROLPLANE" down || true
  else
    rm -f "$POPULATION_MARKER"
    "$CONTROLPLANE" down || true
  fi
  exit "$rc"
}
trap finish EXIT

# ---------------------------------------------------------------------------------------------
# control plane and population

want_population="size=$SIZE namespaces=$NAMESPACES probe=$PROBE_OBJECTS"
# The breaker's run routes its dead host to a local stand-in through an HTTP proxy setting
# (fluxgate's probe, like Go, sends http:// URLs through HTTP_PROXY and https:// ones through
# HTTPS_PROXY): that host's URLs are plain http://.
populate_layout=()
if [[ "$BREAKER" == 1 ]]; then
  want_population+=" plain-http=github.com"
  populate_layout=(--plain-http-host github.com)
  if [[ "${BENCH_PREQUARANTINED:-0}" == 1 ]]; then
    want_population+=" quarantined=github.com"
    populate_layout+=(--quarantined-host github.com)
  fi
fi
have_population="$(cat "$POPULATION_MARKER" 2>/dev/null || true)"
if [[ "$have_population" == "$want_population" ]] \
  && { [[ -f "$STATE/data-kept" ]] || "$CONTROLPLANE" status 2>/dev/null; }; then
  log "reusing the population in $STATE ($have_population)"
  populate_line="reused"
else
  # Anything else there (another size, a run that died half-way) is wiped first.
  rm -f "$POPULATION_MARKER"
  "$CONTROLPLANE" down >/dev/null 2>&1 || true
  populate_line=""
fi
"$CONTROLPLANE" up >/dev/null
eval "$("$CONTROLPLANE" env)"
APISERVER_PID="$(cat "$STATE/apiserver.pid")"
ETCD_PID="$(cat "$STATE/etcd.pid")"
AUDIT="$STATE/logs/audit.log"

if [[ -z "$populate_line" ]]; then
  log "creating $TOTAL GitRepositories in $((NAMESPACES + 1)) namespaces ($PARALLEL in flight)"
  a0="$(cpu_ticks "$APISERVER_PID")" e0="$(cpu_ticks "$ETCD_PID")"
  host0="$(host_ticks)"
  populate_line="$("$POPULATE" create --count "$SIZE" --namespaces "$NAMESPACES" \
    --parallel "$PARALLEL" --probe-objects "$PROBE_OBJECTS" "${populate_layout[@]}" 2> >(tee "$OUT/populate.log" >&2) | tail -n 1)"
  populate_line+=" apiserver_cpu_s=$(secs $(($(cpu_ticks "$APISERVER_PID") - a0)))"
  populate_line+=" etcd_cpu_s=$(secs $(($(cpu_ticks "$ETCD_PID") - e0)))"
  populate_line+=" host_busy_pct=$(busy_pct "$host0")"
  printf '%s\n' "$want_population" >"$POPULATION_MARKER"
fi
log "population: $populate_line"
printf '%s\n' "$populate_line" >"$OUT/populate.txt"

# A freshly started API server fills its caches and a fresh population leaves compaction work:
# wait (at most 3 minutes) until kube-apiserver uses under 10 % of a core over 2 s, so that
# neither exporter's sync is charged for it.
for ((i = 0; i < 90; i++)); do
  a0="$(cpu_ticks "$APISERVER_PID")"
  sleep 2
  (($(cpu_ticks "$APISERVER_PID") - a0 < TICK / 5)) && break
done

# The first cluster-wide list after an API server start costs it more than later ones; take that
# here rather than charge it to whichever exporter goes first. It also checks the population.
listed="$("$FLUXGATE_E2E_KUBECTL" get gitrepositories.source.toolkit.fluxcd.io -A --chunk-size=500 \
  -o name --request-timeout=10m | wc -l)"
((listed == TOTAL)) || die "the cluster holds $listed GitRepositories, expected $TOTAL"

# What holding the objects costs the control plane, before any exporter runs.
apiserver_rss_idle="$(status_kib "$APISERVER_PID" VmRSS)"
etcd_rss_idle="$(status_kib "$ETCD_PID" VmRSS)"
etcd_db_kib="$(du -sk "$STATE/etcd-data" | awk '{ print $1 }')"

if ((RUNS == 0)); then
  log "BENCH_RUNS=0: the population is ready in $STATE; nothing measured"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# one measurement

# What else the shared machine is doing: 1-minute load average and running compilers.
machine_load() {
  local n=0 name
  for name in rustc cc1 cc1plus compile link; do
    n=$((n + $(pgrep -c -x "$name" || true)))
  done
  printf 'load=%s compilers=%s' "$(cut -d' ' -f1 /proc/loadavg)" "$n"
}

# audit_summary OFFSET: the cluster-wide GitRepository requests (the exporters' lists and
# watches; populate and the probe only make namespaced ones) since byte OFFSET of the audit log.
audit_summary() {
  python3 - "$AUDIT" "$1" <<'PY'
import collections, json, os, sys
path, offset = sys.argv[1], int(sys.argv[2])
if os.path.getsize(path) < offset:  # rotated meanwhile: the new file is all new
    offset = 0
prefix = "/apis/source.toolkit.fluxcd.io/v1/gitrepositories"
seen, counts = set(), collections.Counter()
with open(path, "rb") as f:
    f.seek(offset)
    for raw in f:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        uri = event.get("requestURI", "")
        # A watch is logged when its response starts and again when it ends.
        if not uri.startswith(prefix) or event.get("auditID") in seen:
            continue
        seen.add(event.get("auditID"))
        verb = event.get("verb", "")
        if verb == "watch" and "sendInitialEvents=true" in uri:
            verb = "watchlist"
        counts[verb] += 1
print(",".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "none")
PY
}

# measure KIND RUN: starts the exporter, waits for its first complete scrape, lets it settle,
# probes it, stops it, and appends one line to results.tsv.
measure() {
  local kind="$1" run="$2" port tport metrics_url ready_line="" complete_line probe_line
  local t0 a0 e0 host0 audit_offset load_line cpu_ready="" cpu_complete a_sync e_sync host_pct
  local rss_complete rss_settled cpu_scrape samples
  port="$(free_port)"
  metrics_url="http://127.0.0.1:$port/metrics"
  audit_offset="$(stat -c %s "$AUDIT" 2>/dev/null || echo 0)"
  load_line="$(machine_load)"
  a0="$(cpu_ticks "$APISERVER_PID")" e0="$(cpu_ticks "$ETCD_PID")"
  host0="$(host_ticks)"
  t0="$(now_ms)"
  case "$kind" in
    fluxgate)
      "$FLUXGATE" serve --no-webhook --metrics-addr "127.0.0.1:$port" \
        --shutdown-delay 0s --drain-timeout 1s >"$OUT/$kind-$run.log" 2>&1 &
      ;;
    ksm)
      tport="$(free_port)"
      "$KSM" --kubeconfig "$KUBECONFIG" --host 127.0.0.1 --port "$port" \
        --telemetry-host 127.0.0.1 --telemetry-port "$tport" \
        --custom-resource-state-only --custom-resource-state-config-file "$KSM_CONFIG" \
        >"$OUT/$kind-$run.log" 2>&1 &
      ;;
  esac
  EXPORTER_PID=$!
  sample "$EXPORTER_PID" "$OUT/$kind-$run.samples.tsv" &
  SAMPLER_PID=$!

  if [[ "$kind" == fluxgate ]]; then
    ready_line="$("$POPULATE" wait --url "http://127.0.0.1:$port/readyz" --status-ok \
      --since-ms "$t0" --poll 50ms --timeout "$WAIT_TIMEOUT")" \
      || die "fluxgate never answered /readyz 200 (log: $OUT/$kind-$run.log)"
    cpu_ready="$(cpu_ticks "$EXPORTER_PID")"
    complete_line="$("$POPULATE" wait --url "$metrics_url" --sum fluxgate_gitrepositories \
      --count "$TOTAL" --since-ms "$t0" --poll 100ms --timeout "$WAIT_TIMEOUT")" \
      || die "fluxgate's /metrics never held $TOTAL GitRepositories"
  else
    complete_line="$("$POPULATE" wait --url "$metrics_url" --lines gotk_resource_info \
      --count "$TOTAL" --since-ms "$t0" --poll "$KSM_POLL" --timeout "$WAIT_TIMEOUT")" \
      || die "kube-state-metrics never exposed $TOTAL gotk_resource_info series"
  fi
  cpu_complete="$(cpu_ticks "$EXPORTER_PID")"
  rss_complete="$(status_kib "$EXPORTER_PID" VmRSS)"
  a_sync=$(($(cpu_ticks "$APISERVER_PID") - a0))
  e_sync=$(($(cpu_ticks "$ETCD_PID") - e0))
  host_pct="$(busy_pct "$host0")"

  sleep "$SETTLE"
  rss_settled="$(status_kib "$EXPORTER_PID" VmRSS)"
  # What one full scrape costs the exporter (the completeness checks above were such scrapes),
  # asked for as Prometheus asks: both exporters answer it OpenMetrics.
  local c0
  c0="$(cpu_ticks "$EXPORTER_PID")"
  for _ in 1 2 3 4 5; do
    curl -fsS -o /dev/null --max-time 60 -H "Accept: $PROMETHEUS_ACCEPT" "$metrics_url"
  done
  cpu_scrape=$(($(cpu_ticks "$EXPORTER_PID") - c0))

  if [[ "$kind" == fluxgate ]]; then
    samples="$PROBE_SAMPLES"
    probe_line="$("$POPULATE" probe --exporter fluxgate --metrics-url "$metrics_url" \
      --namespace bench-probe --samples "$samples" --ready-state "$READY_STATE")" \
      || die "latency probe against fluxgate failed"
  else
    samples="$KSM_PROBE_SAMPLES"
    probe_line="$("$POPULATE" probe --exporter ksm --metrics-url "$metrics_url" \
      --namespace bench-probe --samples "$samples")" \
      || die "latency probe against kube-state-metrics failed"
  fi

  local hwm cpu_total
  hwm="$(status_kib "$EXPORTER_PID" VmHWM)"
  cpu_total="$(cpu_ticks "$EXPORTER_PID")"
  stop_exporter
  local requests
  requests="$(audit_summary "$audit_offset")"

  printf '%s\n' "$(
    printf 'kind=%s run=%s ready_s=%s complete_s=%s scrapes_until_complete=%s ' \
      "$kind" "$run" "$(field seconds "$ready_line")" "$(field seconds "$complete_line")" \
      "$(field scrapes "$complete_line")"
    printf 'cpu_ready_s=%s cpu_complete_s=%s cpu_per_scrape_s=%s body_bytes=%s ' \
      "$([[ -n "$cpu_ready" ]] && secs "$cpu_ready")" "$(secs "$cpu_complete")" \
      "$(awk -v t="$cpu_scrape" -v h="$TICK" 'BEGIN { printf "%.3f", t / h / 5 }')" "$(field body_bytes "$complete_line")"
    printf 'rss_complete_mib=%s rss_settled_mib=%s hwm_mib=%s cpu_total_s=%s ' \
      "$(mib "$rss_complete")" "$(mib "$rss_settled")" "$(mib "$hwm")" "$(secs "$cpu_total")"
    printf 'apiserver_sync_cpu_s=%s etcd_sync_cpu_s=%s host_busy_pct=%s requests=%s %s %s' \
      "$(secs "$a_sync")" "$(secs "$e_sync")" "$host_pct" "$requests" "$load_line" "$probe_line"
  )" | tee -a "$OUT/results.txt" >&2
}

# ---------------------------------------------------------------------------------------------
# the breaker's run

# metric_sum URL NAME [LABEL_FRAGMENT]: the sum of NAME's samples (whose labels hold the fragment).
metric_sum() {
  curl -fsS --max-time 60 "$1" | awk -v n="$2" -v f="${3:-}" '
    index($1, n) == 1 && (substr($1, length(n) + 1, 1) == "{" || $1 == n) && index($0, f) { s += $NF }
    END { printf "%.6f\n", s }'
}

# breaker_requests START END: every request between two byte offsets of the audit log but
# kube-apiserver's own, by verb and resource (the breaker's writes are namespaced, its Lease
# too); nothing else runs meanwhile.
breaker_requests() {
  python3 - "$AUDIT" "$1" "$2" <<'PY'
import collections, json, os, sys
path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen, counts = set(), collections.Counter()
with open(path, "rb") as f:
    f.seek(start)
    while f.tell() < end:
        raw = f.readline()
        if not raw:
            break
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if event.get("auditID") in seen:
            continue
        seen.add(event.get("auditID"))
        # kube-apiserver's own informers and Lease are not the breaker's.
        if (event.get("user") or {}).get("username") == "system:apiserver":
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource") or "-"
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{event.get('verb', '-')}:{resource}"] += 1
print(",".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
PY
}

measure_breaker() {
  local port metrics_url t0 c0 c_sync c_quarantine audit_sync audit_open line
  local quarantined=0 last=-1 stable_since passes1 pass_sum1 t_quarantine
  "$FLUXGATE_E2E_KUBECTL" create namespace fluxgate-bench >/dev/null 2>&1 || true
  # From here on the objects change: the next run builds the population again.
  rm -f "$POPULATION_MARKER"
  port="$(free_port)"
  metrics_url="http://127.0.0.1:$port/metrics"
  local load_line audit0
  load_line="$(machine_load)"
  audit0="$(stat -c %s "$AUDIT" 2>/dev/null || echo 0)"
  t0="$(now_ms)"
  # fluxgate probes an open host itself. github.com's URLs are http:// here, so its probe goes
  # through the HTTP proxy setting, to a loopback port where nothing listens until the release
  # phase starts the Git host stand-in: refused until then, and github.com stays open. No probe
  # reaches any real Git host.
  git_port="$(free_port)"
  "$FLUXGATE" serve --no-webhook --metrics-addr "127.0.0.1:$port" --shutdown-delay 0s \
    --drain-timeout 1s --breaker=true --namespace fluxgate-bench --identity bench \
    --http-proxy "http://127.0.0.1:$git_port" --https-proxy http://127.0.0.1:9 \
    --breaker-exclude-hosts gitlab.com,git.corp.example.com >"$OUT/breaker.log" 2>&1 &
  EXPORTER_PID=$!
  sample "$EXPORTER_PID" "$OUT/breaker.samples.tsv" &
  SAMPLER_PID=$!
  "$POPULATE" wait --url "$metrics_url" --sum fluxgate_gitrepositories --count "$TOTAL" \
    --since-ms "$t0" --poll 100ms --timeout "$WAIT_TIMEOUT" >/dev/null \
    || die "fluxgate's /metrics never held $TOTAL GitRepositories (log: $OUT/breaker.log)"
  c_sync="$(cpu_ticks "$EXPORTER_PID")"
  local rss_sync t_sync
  rss_sync="$(status_kib "$EXPORTER_PID" VmHWM)"
  t_sync="$(now_ms)"
  # The quarantine: done once the count of quarantined objects has not moved for 30 s.
  stable_since="$(now_ms)"
  for ((i = 0; i < 3600; i++)); do
    quarantined="$(metric_sum "$metrics_url" fluxgate_gitrepositories 'state="quarantined"' | cut -d. -f1)"
    if [[ "$quarantined" != "$last" ]]; then
      last="$quarantined"
      stable_since="$(now_ms)"
    elif ((quarantined > 0 && $(now_ms) - stable_since >= 30000)); then
      break
    fi
    sleep 1
  done
  ((quarantined > 0)) || die "the breaker quarantined nothing (log: $OUT/breaker.log)"
  t_quarantine=$((stable_since - t_sync))
  c_quarantine="$(cpu_ticks "$EXPORTER_PID")"
  passes1="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_count)"
  pass_sum1="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_sum)"
  audit_sync="$(stat -c %s "$AUDIT")"
  local hwm_quarantine
  hwm_quarantine="$(status_kib "$EXPORTER_PID" VmHWM)"
  # Open and waiting: what holding the host open costs, with no probe due yet (5m).
  sleep "$BREAKER_OPEN_SECONDS"
  local c_open passes2 pass_sum2 rss_open
  c_open="$(cpu_ticks "$EXPORTER_PID")"
  passes2="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_count)"
  pass_sum2="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_sum)"
  rss_open="$(status_kib "$EXPORTER_PID" VmRSS)"
  local actions hwm audit_end release_line=""
  audit_end="$(stat -c %s "$AUDIT")"
  [[ -n "$RELEASE_RATE" ]] && release_line="$(measure_release)"
  actions="$(curl -fsS --max-time 60 "$metrics_url" | awk '/^fluxgate_host_breaker_actions_total\{/ && $NF > 0 { printf "%s%s", sep, $0; sep = "; " }')"
  hwm="$(status_kib "$EXPORTER_PID" VmHWM)"
  stop_exporter
  line="$(
    printf 'sync_s=%s sync_cpu_s=%s sync_hwm_mib=%s ' "$(awk -v m=$((t_sync - t0)) 'BEGIN { printf "%.1f", m / 1000 }')" \
      "$(secs "$c_sync")" "$(mib "$rss_sync")"
    printf 'quarantined=%s quarantine_s=%s quarantine_cpu_s=%s quarantine_hwm_mib=%s passes=%s pass_mean_ms=%s ' \
      "$quarantined" "$(awk -v m="$t_quarantine" 'BEGIN { printf "%.1f", m / 1000 }')" \
      "$(secs $((c_quarantine - c_sync)))" "$(mib "$hwm_quarantine")" "${passes1%.*}" \
      "$(awk -v s="$pass_sum1" -v n="$passes1" 'BEGIN { printf "%.2f", (n > 0 ? 1000 * s / n : 0) }')"
    printf 'open_s=%s open_cpu_s=%s open_passes=%s open_pass_mean_ms=%s open_rss_mib=%s hwm_mib=%s ' \
      "$BREAKER_OPEN_SECONDS" "$(secs $((c_open - c_quarantine)))" "$(awk -v a="$passes1" -v b="$passes2" 'BEGIN { printf "%d", b - a }')" \
      "$(awk -v a="$pass_sum1" -v b="$pass_sum2" -v x="$passes1" -v y="$passes2" 'BEGIN { printf "%.2f", (y > x ? 1000 * (b - a) / (y - x) : 0) }')" \
      "$(mib "$rss_open")" "$(mib "$hwm")"
    printf '%s\n' "$load_line"
  )"
  {
    printf '%s\n' "$line"
    printf 'requests until synced and quarantined: %s\n' "$(breaker_requests "$audit0" "$audit_sync")"
    printf 'requests while open (%ss): %s\n' "$BREAKER_OPEN_SECONDS" "$(breaker_requests "$audit_sync" "$audit_end")"
    printf 'actions: %s\n' "$actions"
    [[ -n "$release_line" ]] && printf '%s\n' "$release_line"
  } | tee "$OUT/breaker.txt" >&2
}

# max_rss_since MS: the highest VmRSS (KiB) the sampler saw from MS (since the start) on.
max_rss_since() {
  awk -v from="$1" 'NR > 1 && $1 >= from && $2 > m { m = $2 } END { print m + 0 }' "$OUT/breaker.samples.tsv"
}

# measure_release: github.com answers again; a simulated source-controller reconciles what the
# breaker releases at RELEASE_RATE a second. Prints one line of figures.
measure_release() {
  local quarantined t_start c0 passes0 pass_sum0 audit0 sim_line first last count
  quarantined="$(metric_sum "$metrics_url" fluxgate_gitrepositories 'state="quarantined"' | cut -d. -f1)"
  ((quarantined > 0)) || { echo "release: nothing quarantined"; return; }
  t_start="$(now_ms)"
  c0="$(cpu_ticks "$EXPORTER_PID")"
  passes0="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_count)"
  pass_sum0="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_sum)"
  audit0="$(stat -c %s "$AUDIT")"
  log "release: $quarantined quarantined; simulated source-controller at $RELEASE_RATE/s, Git host stand-in on 127.0.0.1:$git_port (load $(cut -d' ' -f1-3 /proc/loadavg))"
  sim_line="$("$SIMULATION" --per-second "$RELEASE_RATE" --count "$quarantined" \
    --timeout "$RELEASE_TIMEOUT" --git-host-listen "127.0.0.1:$git_port" 2>"$OUT/simulation.log")" \
    || die "the simulated source-controller failed (log: $OUT/simulation.log)"
  local t_end audit1 c1 passes1 pass_sum1 left
  t_end="$(now_ms)"
  c1="$(cpu_ticks "$EXPORTER_PID")"
  # The last status write reaches fluxgate's store through its watch: give it a moment.
  sleep 5
  left="$(metric_sum "$metrics_url" fluxgate_gitrepositories 'state="quarantined"' | cut -d. -f1)"
  passes1="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_count)"
  pass_sum1="$(metric_sum "$metrics_url" fluxgate_host_breaker_pass_duration_seconds_sum)"
  audit1="$(stat -c %s "$AUDIT")"
  first="$(field first_release_ms "$sim_line")"
  last="$(field last_ready_ms "$sim_line")"
  count="$(field reconciled "$sim_line")"
  printf 'release: quarantined=%s reconciled=%s left_quarantined=%s rate=%s ' \
    "$quarantined" "$count" "$left" "$RELEASE_RATE"
  printf 'until_first_release_s=%s release_s=%s allowed_s=%s ratio=%s ' \
    "$(awk -v a="$first" -v b="$t_start" 'BEGIN { printf "%.1f", (a - b) / 1000 }')" \
    "$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.1f", (b - a) / 1000 }')" \
    "$(awk -v n="$quarantined" -v r="$RELEASE_RATE" 'BEGIN { printf "%.1f", n / r }')" \
    "$(awk -v a="$first" -v b="$last" -v n="$quarantined" -v r="$RELEASE_RATE" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n / r) }')"
  printf 'release_cpu_s=%s passes=%s pass_mean_ms=%s release_max_rss_mib=%s hwm_mib=%s load=%s\n' \
    "$(secs $((c1 - c0)))" "$(awk -v a="$passes0" -v b="$passes1" 'BEGIN { printf "%d", b - a }')" \
    "$(awk -v a="$pass_sum0" -v b="$pass_sum1" -v x="$passes0" -v y="$passes1" 'BEGIN { printf "%.2f", (y > x ? 1000 * (b - a) / (y - x) : 0) }')" \
    "$(mib "$(max_rss_since $((t_start - t0)))")" "$(mib "$(status_kib "$EXPORTER_PID" VmHWM)")" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  printf 'simulation: %s\n' "$sim_line"
  printf 'requests during the release (%ss): %s\n' "$(((t_end - t_start) / 1000))" \
    "$(breaker_requests "$audit0" "$audit1")"
}

if [[ "$BREAKER" == 1 ]]; then
  log "breaker: fluxgate with --breaker=true against $TOTAL GitRepositories (load $(cut -d' ' -f1-3 /proc/loadavg))"
  measure_breaker
  log "raw results in $OUT"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# runs

kinds=(fluxgate ksm)
[[ -n "$ONLY" ]] && kinds=("$ONLY")
log "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((run = 1; run <= RUNS; run++)); do
  # Alternate who goes first, so neither always meets a cold API server cache.
  order=("${kinds[@]}")
  if ((run % 2 == 0)) && ((${#kinds[@]} == 2)); then order=("${kinds[1]}" "${kinds[0]}"); fi
  for kind in "${order[@]}"; do
    log "run $run/$RUNS: $kind against $TOTAL GitRepositories (load $(cut -d' ' -f1-3 /proc/loadavg))"
    measure "$kind" "$run"
  done
done

python3 - "$OUT/results.txt" "$SIZE" "$TOTAL" "$NAMESPACES" "$populate_line" \
  "$(mib "$apiserver_rss_idle")" "$(mib "$etcd_rss_idle")" "$(mib "$etcd_db_kib")" <<'PY' | tee "$OUT/table.md"
import statistics, sys
path, size, total, namespaces, populate, api_rss, etcd_rss, etcd_db = sys.argv[1:9]
rows = []
for line in open(path):
    rows.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def med(kind, key):
    vals = [num(r.get(key)) for r in rows if r["kind"] == kind]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"

metrics = [
    ("RSS at first complete scrape (MiB)", "rss_complete_mib", 1),
    ("RSS settled (MiB)", "rss_settled_mib", 1),
    ("peak RSS, VmHWM (MiB)", "hwm_mib", 1),
    ("CPU until /readyz 200 (s)", "cpu_ready_s", 2),
    ("CPU until first complete scrape (s)", "cpu_complete_s", 2),
    ("CPU of one full scrape (s)", "cpu_per_scrape_s", 3),
    ("time to /readyz 200 (s)", "ready_s", 2),
    ("time to first complete scrape (s)", "complete_s", 2),
    ("/metrics body (KiB)", "body_bytes", 0),
    ("status change → metrics, p50 (ms)", "p50_ms", 0),
    ("status change → metrics, p99 (ms)", "p99_ms", 0),
    ("status change → metrics, max (ms)", "max_ms", 0),
    ("status change → start of the scrape showing it, p50 (ms)", "start_p50_ms", 0),
    ("status change → start of the scrape showing it, p99 (ms)", "start_p99_ms", 0),
    ("probe scrape p50 (ms)", "scrape_p50_ms", 1),
    ("API server CPU during the sync (s)", "apiserver_sync_cpu_s", 2),
    ("etcd CPU during the sync (s)", "etcd_sync_cpu_s", 2),
    ("host CPU busy during the sync (%)", "host_busy_pct", 0),
]
kinds = [k for k in ("fluxgate", "ksm") if any(r["kind"] == k for r in rows)]
for r in rows:
    if r.get("body_bytes"):
        r["body_bytes"] = str(float(r["body_bytes"]) / 1024)
runs = {k: sum(1 for r in rows if r["kind"] == k) for k in kinds}
print(f"\n### {int(size):,} GitRepositories ({total} with the probe's, {namespaces} namespaces)\n")
print(f"population: {populate}")
print(f"control plane holding them, before any exporter: kube-apiserver RSS {api_rss} MiB, "
      f"etcd RSS {etcd_rss} MiB, etcd data {etcd_db} MiB\n")
head = "| medians of " + ", ".join(f"{runs[k]} {k}" for k in kinds) + " runs | " + " | ".join(
    {"fluxgate": "fluxgate", "ksm": "kube-state-metrics"}[k] for k in kinds)
if len(kinds) == 2:
    head += " | KSM ÷ fluxgate"
print(head + " |")
print("|---" * (len(kinds) + 1 + (len(kinds) == 2)) + "|")
for title, key, digits in metrics:
    vals = [med(k, key) for k in kinds]
    if all(v is None for v in vals):
        continue
    cells = [fmt(v, digits) for v in vals]
    if len(kinds) == 2:
        f, k = vals
        cells.append("–" if not f or k is None else f"{k / f:.1f}×")
    print(f"| {title} | " + " | ".join(cells) + " |")
print()
for r in rows:
    print(f"- {r['kind']} run {r['run']}: load {r.get('load')} with {r.get('compilers')} compilers "
          f"at the start; requests {r.get('requests')}; probe samples {r.get('samples')} "
          f"(timeouts {r.get('timeouts')}); write p50 {r.get('write_p50_ms')} ms")
PY
log "raw results in $OUT"
