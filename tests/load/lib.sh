# Shared by the load scripts: builds, certificates, the load generator, process probes.
# Everything runs on loopback; every load run is bounded by a duration or a request count.

LOAD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# oha (crates.io) gives a fixed request rate, HTTP/2, a CA file and JSON percentiles.
OHA_VERSION="${OHA_VERSION:-1.16.0}"
FLUXGATE_TOOLS="${FLUXGATE_TOOLS:-$HOME/.cache/fluxgate-tools}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_oha() {
  if command -v oha >/dev/null && oha --version | grep -q "$OHA_VERSION"; then
    OHA="$(command -v oha)"
  elif [[ -x "$FLUXGATE_TOOLS/bin/oha" ]] && "$FLUXGATE_TOOLS/bin/oha" --version | grep -q "$OHA_VERSION"; then
    OHA="$FLUXGATE_TOOLS/bin/oha"
  else
    log "installing oha $OHA_VERSION into $FLUXGATE_TOOLS (once)"
    cargo install oha --version "$OHA_VERSION" --locked --root "$FLUXGATE_TOOLS" >&2
    OHA="$FLUXGATE_TOOLS/bin/oha"
  fi
}

build_release() {
  log "building fluxgate and the baseline server (release)"
  (cd "$LOAD_ROOT" && cargo build --release --locked --bin fluxgate --example bench_server >&2)
  FLUXGATE="$LOAD_ROOT/target/release/fluxgate"
  BENCH_SERVER="$LOAD_ROOT/target/release/examples/bench_server"
}

# make_workdir: a temporary directory with certificates for 127.0.0.1 and a GitRepository CREATE
# review, removed on exit.
make_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-load.XXXXXX")"
  trap 'stop_all; rm -rf "$WORK"' EXIT
  "$FLUXGATE" certs --out "$WORK/certs" --dns localhost --ip 127.0.0.1 >/dev/null
  cat >"$WORK/review.json" <<'JSON'
{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"source.toolkit.fluxcd.io","version":"v1","kind":"GitRepository"},"resource":{"group":"source.toolkit.fluxcd.io","version":"v1","resource":"gitrepositories"},"requestKind":{"group":"source.toolkit.fluxcd.io","version":"v1","kind":"GitRepository"},"requestResource":{"group":"source.toolkit.fluxcd.io","version":"v1","resource":"gitrepositories"},"name":"project-1042","namespace":"proj-1042","operation":"CREATE","userInfo":{"username":"system:serviceaccount:platform:project-creator","uid":"0f0b1b63-5f4b-4f0e-9b5e-1a8c7b1f9a11","groups":["system:serviceaccounts","system:authenticated"]},"object":{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"GitRepository","metadata":{"name":"project-1042","namespace":"proj-1042","creationTimestamp":null,"labels":{"platform.example.com/project":"1042"}},"spec":{"interval":"1m0s","ref":{"branch":"main"},"timeout":"60s","url":"https://github.com/example-org/project-1042"}},"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-create"}}}
JSON
}

SERVER_PIDS=()
stop_all() {
  local pid
  for pid in "${SERVER_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  SERVER_PIDS=()
}

# start_server KIND PORT [taskset-cpu-list]: starts `fluxgate serve --no-exporter` (KIND=fluxgate),
# the do-nothing baseline (KIND=noop), the baseline that only parses the body into a JSON value and
# serialises it back (KIND=floor) or the admission router on the baseline (KIND=router) on
# 127.0.0.1:PORT; sets SERVER_PID and STARTUP_MS (spawn
# to first 200 answered, measured by a client polling every millisecond).
start_server() {
  local kind="$1" port="$2" cpus="${3:-}"
  local pin=()
  [[ -n "$cpus" ]] && pin=(taskset -c "$cpus")
  local cmd
  case "$kind" in
    fluxgate)
      cmd=("${pin[@]}" "$FLUXGATE" serve --no-exporter
        --webhook-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 1))"
        --tls-cert-file "$WORK/certs/tls.crt" --tls-key-file "$WORK/certs/tls.key"
        --shutdown-delay 0s --drain-timeout 5s) ;;
    noop|floor|router)
      # floor: the JSON round trip any JSON webhook does, nothing else. router: fluxgate's
      # admission router on the baseline's stack, without a log subscriber.
      local handler="$kind"
      [[ "$kind" == router ]] && handler=webhook
      cmd=("${pin[@]}" "$BENCH_SERVER" --addr "127.0.0.1:$port" --handler "$handler"
        --cert "$WORK/certs/tls.crt" --key "$WORK/certs/tls.key") ;;
    *) die "unknown server kind $kind" ;;
  esac
  # The server's log goes to a file, as a container's would; fluxgate logs every patch at info.
  local out
  out="$(python3 "$LOAD_ROOT/tests/load/startup.py" "$port" "$WORK/certs/ca.crt" \
    "$WORK/review.json" "$WORK/$kind.log" -- "${cmd[@]}")" || die "$kind did not start: $(tail -5 "$WORK/$kind.log")"
  read -r SERVER_PID STARTUP_MS <<<"$out"
  SERVER_PIDS+=("$SERVER_PID")
}

stop_server() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 200); do
    alive "$pid" || break
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
  local kept=()
  for i in "${SERVER_PIDS[@]}"; do [[ "$i" != "$pid" ]] && kept+=("$i"); done
  SERVER_PIDS=("${kept[@]:-}")
}

# alive PID: running and not a zombie (the servers are started by startup.py, which exits, so
# they are reaped by whatever adopts them, possibly late).
alive() {
  [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# oha_run OUT.json PORT ARGS...: one bounded oha run against the review endpoint, JSON to
# OUT.json. Prefix with `taskset -c N` through OHA_PIN to keep the generator off the server's core.
oha_run() {
  local out="$1" port="$2"; shift 2
  ${OHA_PIN:-} "$OHA" --no-tui --output-format json -m POST -T application/json \
    -D "$WORK/review.json" --cacert "$WORK/certs/ca.crt" "$@" \
    "https://127.0.0.1:$port/mutate" >"$out"
}

machine_load() {
  local busy
  busy="$(ps -eo comm= | grep -cE '^(go|compile|cc1|cc1plus|rustc|ld|link)$' || true)"
  printf 'load average %s; %s compiler processes running' "$(cut -d' ' -f1-3 /proc/loadavg)" "$busy"
}
