#!/usr/bin/env bash
# The incident lab: a real kube-apiserver + etcd, the real Flux source-controller, ~130
# GitRepositories of which 113 point at a Git host that never answers, and fluxgate; one run per
# setup, then a table of the figures per setup (also in lab/results/).
#
#   lab/run.sh              setups a b c c2 d
#   lab/run.sh a d          only those
#   lab/run.sh f-1 g-1 f-2  a setup with a run label: target/lab/run-f-1, lab/results/f-1/
#
# Setups:
#   a  Flux defaults, no fluxgate remedy (fluxgate only observes: exporter, no webhook)
#   b  fluxgate's webhook registered: every GitRepository gets its timeout floor (5m)
#   c  fluxgate's janitor: suspends GitRepositories failing longer than LAB_FAILING_FOR
#   c2 the same janitor with LAB_FAILING_FOR_SHORT, below the time between two attempts of one
#      failing GitRepository (source-controller re-stamps Ready=False at every attempt)
#   d  the proxy remedy: source-controller runs with the env fluxgate injects into its Pod
#   e  (not run by default) fluxgate as shipped plus the janitor: webhook (5m) and janitor
#   f  (not run by default) an outage that ends: the far host tarpits until LAB_OUTAGE_END of the
#      run, then serves real Git; fluxgate's webhook (5m) and host circuit breaker
#   g  (not run by default) a flaky far host: it answers LAB_FLAKY_SUCCESS of the clone attempts
#      (seeded, per repository and attempt) and tarpits the rest; webhook (5m) and breaker
#   m  (not run by default) a mirror rule: the far host down for good, the in-house Git server
#      also answering as MIRROR_HOST with the far host's paths; webhook (5m), breaker, and
#      --mirror from the far host to the mirror. The new GitRepositories created during the run
#      are for the far host; the 113 from before carry fluxgate.io/mirror: "false" (they stand
#      for objects created before the rule, which is applied on CREATE only)
#   n  (not run by default) m without the mirror rule: quarantine alone
#   l  (not run by default) a host lane, far host down for good: a second source-controller
#      (--watch-label-selector=sharding.fluxcd.io/key=far, the lane's settings of
#      deploy/lanes/component scaled) serves the far host; the main one runs with
#      --watch-label-selector=!sharding.fluxcd.io/key; fluxgate's webhook (5m) with
#      --lane FAR_HOST=far. The 113 from before carry the label from their creation (they stand
#      for objects the platform labelled, or created after the rule); a dryRun create checks that
#      the webhook labels a new far-host GitRepository
#   lg (not run by default) l with g's flaky far host
#   fl (not run by default) f with a dynamic lane: the far host down until LAB_OUTAGE_END, then
#      serving; fluxgate's webhook (5m) and breaker with --breaker-lane far, which moves the far
#      host's GitRepositories into the lane (l's two source-controllers) instead of suspending
#      them, and back once its probe finds the host answering. No --lane rule: the 113 start
#      unlabelled, on the main source-controller
#   ag (not run by default) a (Flux defaults, no remedy) with g's flaky far host
#   In g, lg and ag the Git server gets a new commit on every far-host repository every
#   LAB_COMMIT_EVERY seconds, so the runs count the revisions that reach the far-host
#   GitRepositories.
#   h  (not run by default) the cluster's egress fails for every host, then recovers: the far
#      host and the in-house Git host both refuse (or tarpit, LAB_EGRESS_MODE) between two
#      fractions of the run (LAB_EGRESS_WINDOW), and answer before and after; webhook (5m) and
#      breaker. Nothing should be quarantined (fluxgate_breaker_cluster_wide_failure)
#
# Knobs (environment):
#   LAB_RUN_SECONDS       length of each setup's run, wall-clock seconds (default 450)
#   LAB_SCALE             the failing path's clock is compressed by this factor: spec.timeout 60s
#                         (Flux default) -> 60s/SCALE, the webhook's 5m -> 5m/SCALE, and the alert
#                         rules' windows and thresholds likewise (default 20; 1 = real values)
#   LAB_PROBES            when the new healthy GitRepositories are created, as fractions of the
#                         run (default 0.1,0.3,0.5,0.7,0.9)
#   LAB_FAILING_FOR       janitor threshold in setups c/e (default 3m)
#   LAB_FAILING_FOR_SHORT janitor threshold in setup c2 (default 1m)
#   LAB_JANITOR_INTERVAL  janitor period in setups c/e (default 30s)
#   LAB_TOTAL / LAB_HEALTHY  GitRepositories and how many of them are healthy (130 / 17)
#   LAB_BREAKER_RUN_SECONDS  run length of f, fl, g, lg and ag (default 900)
#   LAB_OUTAGE_END        f, fl: when the far host comes back, as a fraction of the run (default 0.7)
#   LAB_RETURN_AFTER_PROBE / LAB_RETURN_BEFORE_PROBE  f, fl: come back not at LAB_OUTAGE_END itself
#                         but this many lab seconds after the first probe of fluxgate the far host
#                         receives from then on / before the next one is due (see netlab.py)
#   LAB_EGRESS_RUN_SECONDS   run length of h (default 600)
#   LAB_EGRESS_WINDOW     h: when every host is down, two fractions of the run (default 0.3,0.6)
#   LAB_EGRESS_MODE       h: refuse (default) or tarpit
#   LAB_FLAKY_SUCCESS     g: share of clone attempts the far host answers (default 0.3)
#   LAB_FLAKY_SEED        g: seed of those answers (default fluxgate-lab)
#   LAB_COMMIT_EVERY      g, lg, ag: lab seconds between two commits of one far-host repository
#                         (default 60; 0: none)
#   LAB_LANE_CONCURRENT   l, lg, fl: the lane's source-controller's --concurrent (default 16, as
#                         deploy/lanes/component; l-1, l-2, lg-1, lg-2 and lg-nf ran with 4)
#   LAB_LANE_MIN_RETRY / LAB_LANE_MAX_RETRY  l, lg, fl: the lane's --min-retry-delay and
#                         --max-retry-delay in platform seconds, scaled like the timeouts (default
#                         0.75 and 900, Flux's defaults as in deploy/lanes/component: 37ms and 45s
#                         at the default scale; the runs before lg-3 had 30 and 1800)
#   LAB_LANE_FLOOR        l, lg, fl: fluxgate's --gitrepository-timeout in platform seconds (default
#                         300, the 5m floor; 60 leaves Flux's default timeout in place)
#   LAB_BREAKER_PASS      f, fl, g: the breaker's --breaker-pass-interval, not scaled (default 1s)
#   LAB_BREAKER_PROBE_MAX f, fl, g: --breaker-probe-interval-max in platform seconds (default 600)
#   LAB_BREAKER_PROBE     f, fl, g, h: --breaker-probe-interval in platform seconds (default 60)
#   LAB_BREAKER_PROBE_TIMEOUT  --breaker-probe-timeout in platform seconds (default 10)
#   LAB_BREAKER_RELEASE_EVERY  --breaker-release-every in platform seconds (default 0)
#   The breaker's durations are platform values scaled like the timeouts: window 10m, probe
#   every 1m (canary waits up to 10m; 1h once flapping), probe timeout 10s, canary timeout 10m,
#   release every 0s (paced by source-controller); its counts (4 failing, ratio 0.5, batch 20)
#   stay. fluxgate runs with the lab's host names (the same private /etc/hosts as
#   source-controller) wherever the breaker is on, so its probes reach the lab's hosts.
#   LAB_DIR               working state (default target/lab)
#   LAB_RESULTS           table, data and plots (default lab/results/)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lab/lib/config.sh
source "$here/lib/config.sh"

RUN_SECONDS="${LAB_RUN_SECONDS:-450}"
SCALE="${LAB_SCALE:-20}"
PROBES="${LAB_PROBES:-0.1,0.3,0.5,0.7,0.9}"
FAILING_FOR="${LAB_FAILING_FOR:-3m}"
FAILING_FOR_SHORT="${LAB_FAILING_FOR_SHORT:-1m}"
JANITOR_INTERVAL="${LAB_JANITOR_INTERVAL:-30s}"
BREAKER_RUN_SECONDS="${LAB_BREAKER_RUN_SECONDS:-900}"
OUTAGE_END="${LAB_OUTAGE_END:-0.7}"
FLAKY_SUCCESS="${LAB_FLAKY_SUCCESS:-0.3}"
FLAKY_SEED="${LAB_FLAKY_SEED:-fluxgate-lab}"
COMMIT_EVERY="${LAB_COMMIT_EVERY:-60}"
LANE_FLOOR="${LAB_LANE_FLOOR:-300}"
LANE_CONCURRENT="${LAB_LANE_CONCURRENT:-16}"
LANE_MIN_RETRY="${LAB_LANE_MIN_RETRY:-0.75}"
LANE_MAX_RETRY="${LAB_LANE_MAX_RETRY:-900}"
BREAKER_PASS="${LAB_BREAKER_PASS:-1s}"
BREAKER_PROBE_MAX="${LAB_BREAKER_PROBE_MAX:-600}"
BREAKER_PROBE="${LAB_BREAKER_PROBE:-60}"
BREAKER_PROBE_TIMEOUT="${LAB_BREAKER_PROBE_TIMEOUT:-10}"
BREAKER_RELEASE_EVERY="${LAB_BREAKER_RELEASE_EVERY:-0}"
RETURN_AFTER_PROBE="${LAB_RETURN_AFTER_PROBE:-}"
RETURN_BEFORE_PROBE="${LAB_RETURN_BEFORE_PROBE:-}"
EGRESS_RUN_SECONDS="${LAB_EGRESS_RUN_SECONDS:-600}"
EGRESS_WINDOW="${LAB_EGRESS_WINDOW:-0.3,0.6}"
EGRESS_MODE="${LAB_EGRESS_MODE:-refuse}"
TOTAL="${LAB_TOTAL:-130}"
HEALTHY="${LAB_HEALTHY:-17}"
LAB_DIR="${LAB_DIR:-$repo/target/lab}"
RESULTS="${LAB_RESULTS:-$here/results}"
PY=/usr/bin/python3
FLUXGATE="$repo/target/release/fluxgate"
# Names the failing and healthy URLs use; only source-controller's private /etc/hosts (and the
# proxy's map) resolve them, to 127.0.0.1.
FAR_HOST=github.lab.test
NEAR_HOST=git.platform.lab.test
MIRROR_HOST=mirror.platform.lab.test

SETUPS=("$@")
((${#SETUPS[@]})) || SETUPS=(a b c c2 d)

log() { printf '[lab %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Platform durations at the lab's scale, as Flux duration strings (whole milliseconds).
scaled() {
  awk -v s="$1" -v k="$SCALE" 'BEGIN { ms = int(s * 1000 / k); if (ms % 1000 == 0) printf "%ds", ms / 1000; else printf "%dms", ms }'
}
TIMEOUT_DEFAULT="$(scaled 60)"
TIMEOUT_WEBHOOK="$(scaled 300)"
BREAKER_FLAGS=(--breaker=true --breaker-window "$(scaled 600)" --breaker-probe-interval "$(scaled "$BREAKER_PROBE")"
  --breaker-probe-interval-max "$(scaled "$BREAKER_PROBE_MAX")" --breaker-flapping-probe-interval-max "$(scaled 3600)" --breaker-canary-timeout "$(scaled 600)"
  --breaker-probe-timeout "$(scaled "$BREAKER_PROBE_TIMEOUT")"
  --breaker-release-every "$(scaled "$BREAKER_RELEASE_EVERY")" --breaker-pass-interval "$BREAKER_PASS")

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------------------------
# processes: every one started here is recorded and stopped by pid on exit

PIDS=()
NAMES=()

start_bg() {
  local name="$1" logfile="$2"
  shift 2
  "$@" >>"$logfile" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
  LAST_PID=$!
}

stop_all() {
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  NAMES=()
}

controlplane() {
  FLUXGATE_E2E_DIR="$LAB_DIR/controlplane" FLUXGATE_SOURCE_CONTROLLER_VERSION="$SC_VERSION" \
    "$repo/tests/e2e/controlplane.sh" "$@"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  controlplane down >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
  local url="$1" what="$2" i
  for i in $(seq 1 120); do
    curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.5
  done
  die "$what not answering at $url"
}

# ---------------------------------------------------------------------------------------------
# one-time preparation

prepare() {
  "$here/build.sh"
  [[ -x "$SC_BIN" ]] || die "no source-controller binary"
  [[ -x "$FLUXGATE" ]] || die "no fluxgate binary"
  # Debian packages the lab itself needs (as .ci/run does for the tests).
  local -a need=()
  command -v prometheus >/dev/null || need+=(prometheus)
  "$PY" -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
  "$PY" -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
  if ((${#need[@]})); then
    command -v apt-get >/dev/null && [[ $(id -u) == 0 ]] || die "needs the Debian packages: ${need[*]}"
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Debian starts the service on install; the lab runs its own instance per setup.
    systemctl stop prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true
  fi
  command -v prometheus >/dev/null || die "prometheus not found (Debian package prometheus)"
  "$PY" -c 'import matplotlib, yaml' 2>/dev/null || die "needs python3-matplotlib and python3-yaml"
  mkdir -p "$LAB_DIR" "$RESULTS"

  # Small real repositories: one commit each, served by path. Every failing repository also
  # exists here under its GitHub path, so the proxy of setup d can answer it.
  local gitroot="$LAB_DIR/git" i last=$((TOTAL + 20))
  if [[ ! -f "$gitroot/.ready-$last" ]]; then
    rm -rf "$gitroot"
    mkdir -p "$gitroot/platform" "$gitroot/example-org"
    local src="$LAB_DIR/git-src"
    rm -rf "$src"
    git init -q -b main "$src"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  greeting: hello\n' >"$src/app.yaml"
    git -C "$src" add app.yaml
    git -C "$src" -c user.name=platform -c user.email=platform@lab.test commit -q -m "app"
    for ((i = 1; i <= last; i++)); do
      n="$(printf '%03d' "$i")"
      git clone -q --bare "$src" "$gitroot/platform/proj-$n.git"
      ln -s "../platform/proj-$n.git" "$gitroot/example-org/proj-$n.git"
    done
    touch "$gitroot/.ready-$last"
  fi

  if [[ ! -f "$LAB_DIR/certs/tls.crt" ]]; then
    "$FLUXGATE" certs --out "$LAB_DIR/certs" --ip 127.0.0.1 >/dev/null
  fi
}

# ---------------------------------------------------------------------------------------------
# one setup

run_setup() {
  # "f-2": setup f, run label 2 (its own state and results directories).
  local setup="${1%%-*}" dir="$LAB_DIR/run-$1"
  local run_seconds="$RUN_SECONDS"
  case "$setup" in f | fl | g | lg | ag) run_seconds="$BREAKER_RUN_SECONDS" ;; h) run_seconds="$EGRESS_RUN_SECONDS" ;; esac
  # lane: two source-controllers (l, lg, fl); lane_rule: fluxgate's --lane puts the far host's
  # GitRepositories there from their creation (l, lg), where in fl the breaker moves them.
  local lane=false lane_rule=false commits=0
  case "$setup" in l | lg) lane=true; lane_rule=true ;; fl) lane=true ;; esac
  case "$setup" in g | lg | ag) commits="$COMMIT_EVERY" ;; esac
  rm -rf "$dir"
  mkdir -p "$dir"
  log "setup $setup: control plane"
  controlplane down >/dev/null 2>&1 || true
  controlplane up >"$dir/controlplane.out" 2>&1 || { cat "$dir/controlplane.out" >&2; die "control plane"; }
  eval "$(controlplane env)"
  local api="$APISERVER_URL" pki="$LAB_DIR/controlplane/pki"
  local kubectl=("$FLUXGATE_E2E_KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout=30s)
  "${kubectl[@]}" create namespace flux-system >/dev/null
  "${kubectl[@]}" create namespace fluxgate >/dev/null

  local git_port tarpit_port proxy_port near_port sc_metrics sc_health sc_storage fg_webhook fg_metrics prom_port
  local lane_metrics lane_health lane_storage
  git_port="$(free_port)"; tarpit_port="$(free_port)"; proxy_port="$(free_port)"
  sc_metrics="$(free_port)"; sc_health="$(free_port)"; sc_storage="$(free_port)"
  lane_metrics="$(free_port)"; lane_health="$(free_port)"; lane_storage="$(free_port)"
  fg_webhook="$(free_port)"; fg_metrics="$(free_port)"; prom_port="$(free_port)"
  local bound=$((run_seconds + 600))
  # The port the healthy GitRepositories' URLs name: the Git server itself, or in h a gate in
  # front of it that goes down with the far host.
  near_port="$git_port"
  [[ "$setup" == h ]] && near_port="$(free_port)"

  log "setup $1: git server :$git_port, far host :$tarpit_port"
  start_bg git "$dir/git.out" "$PY" "$here/netlab.py" git --port "$git_port" \
    --root "$LAB_DIR/git" --log "$dir/git.csv" --max-seconds "$bound"
  # The far host: down for good (a tarpit), down until the outage ends (f; the end is written
  # once t=0 is known), or answering a share of the attempts (g). Both relay what they answer to
  # the Git server, which holds every far-host repository under its GitHub path.
  local -a return_opt=()
  [[ -n "$RETURN_AFTER_PROBE" ]] && return_opt=(--return-after-probe "$RETURN_AFTER_PROBE")
  [[ -n "$RETURN_BEFORE_PROBE" ]] && return_opt=(--return-before-probe "$RETURN_BEFORE_PROBE")
  case "$setup" in
    f | fl) start_bg farhost "$dir/farhost.out" "$PY" "$here/netlab.py" farhost --port "$tarpit_port" \
         --log "$dir/farhost.csv" --max-seconds "$bound" --upstream "127.0.0.1:$git_port" \
         --outage-end-file "$dir/outage-end" "${return_opt[@]}" ;;
    h) start_bg farhost "$dir/farhost.out" "$PY" "$here/netlab.py" farhost --port "$tarpit_port" \
         --log "$dir/farhost.csv" --max-seconds "$bound" --upstream "127.0.0.1:$git_port" \
         --outage-window-file "$dir/outage-window" --down-mode "$EGRESS_MODE"
       start_bg neargate "$dir/neargate.out" "$PY" "$here/netlab.py" farhost --port "$near_port" \
         --log "$dir/neargate.csv" --max-seconds "$bound" --upstream "127.0.0.1:$git_port" \
         --outage-window-file "$dir/outage-window" --down-mode "$EGRESS_MODE" ;;
    g | lg | ag) start_bg farhost "$dir/farhost.out" "$PY" "$here/netlab.py" farhost --port "$tarpit_port" \
         --log "$dir/farhost.csv" --max-seconds "$bound" --upstream "127.0.0.1:$git_port" \
         --success-fraction "$FLAKY_SUCCESS" --seed "$FLAKY_SEED" ;;
    *) start_bg tarpit "$dir/tarpit.out" "$PY" "$here/netlab.py" tarpit --port "$tarpit_port" \
         --log "$dir/tarpit.csv" --max-seconds "$bound" ;;
  esac

  # fluxgate: the exporter in every setup (its gauges are among the figures); the webhook and
  # the janitor only where the setup says so.
  local fg_timeout="$TIMEOUT_WEBHOOK"
  [[ $lane == true ]] && fg_timeout="$(scaled "$LANE_FLOOR")"
  local -a fg=("$FLUXGATE" serve --webhook-addr "127.0.0.1:$fg_webhook"
    --metrics-addr "127.0.0.1:$fg_metrics" --tls-cert-file "$LAB_DIR/certs/tls.crt"
    --tls-key-file "$LAB_DIR/certs/tls.key" --namespace fluxgate --identity lab-fluxgate
    --gitrepository-timeout "$fg_timeout" --shutdown-delay 0s --drain-timeout 2s)
  case "$setup" in
    c | e) fg+=(--janitor=true --janitor-interval "$JANITOR_INTERVAL" --failing-for "$FAILING_FOR") ;;
    c2) fg+=(--janitor=true --janitor-interval "$JANITOR_INTERVAL" --failing-for "$FAILING_FOR_SHORT") ;;
    f | g | h | n) fg+=("${BREAKER_FLAGS[@]}") ;;
    fl) fg+=("${BREAKER_FLAGS[@]}" --breaker-lane far) ;;
    m) fg+=("${BREAKER_FLAGS[@]}" --mirror "http://$FAR_HOST:$tarpit_port/=http://$MIRROR_HOST:$git_port/") ;;
    l | lg) fg+=(--lane "$FAR_HOST=far") ;;
  esac
  # The lab's host names, for source-controller and, where the breaker probes hosts, fluxgate.
  printf '127.0.0.1 localhost\n127.0.0.1 %s %s %s\n' "$FAR_HOST" "$NEAR_HOST" "$MIRROR_HOST" >"$dir/hosts"
  # JSON logs: analyze.py reads the breaker's state changes from them. With the breaker, fluxgate
  # gets source-controller's view of the lab's names (a private mount namespace, as below): its
  # probe takes the path source-controller's clones take.
  local -a fg_ns=()
  case "$setup" in
    f | fl | g | h | m | n) fg_ns=(unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$dir/hosts") ;;
  esac
  start_bg fluxgate "$dir/fluxgate.log" "${fg_ns[@]}" env KUBECONFIG="$KUBECONFIG" FLUXGATE_LOG_FORMAT=json "${fg[@]}"
  wait_http "http://127.0.0.1:$fg_metrics/healthz" fluxgate
  case "$setup" in
    b | e | f | fl | g | h | m | n | l | lg)
      "$PY" "$here/driver.py" --api "$api" --pki "$pki" webhook \
        --url "https://127.0.0.1:$fg_webhook/mutate" --ca "$LAB_DIR/certs/ca.crt"
      ;;
  esac

  # source-controller's environment: a clean one, plus in setup d exactly what fluxgate's
  # webhook injects into its Pod (taken from `fluxgate mutate` on Flux's Deployment).
  local -a sc_env=(PATH=/usr/bin:/bin HOME="$dir" KUBECONFIG="$KUBECONFIG" RUNTIME_NAMESPACE=flux-system)
  if [[ "$setup" == d ]]; then
    start_bg proxy "$dir/proxy.out" "$PY" "$here/netlab.py" proxy --port "$proxy_port" \
      --log "$dir/proxy.csv" --max-seconds "$bound" \
      --map "$FAR_HOST:$tarpit_port=127.0.0.1:$git_port" --map "$NEAR_HOST:$git_port=127.0.0.1:$git_port"
    "$FLUXGATE" mutate -f "$repo/examples/source-controller.yaml" \
      --https-proxy "http://127.0.0.1:$proxy_port" --http-proxy "http://127.0.0.1:$proxy_port" \
      --no-proxy "$NEAR_HOST" --kubernetes-service-ip 127.0.0.1 -o json >"$dir/source-controller.mutated.json"
    mapfile -t injected < <("$PY" - "$dir/source-controller.mutated.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc = doc[0] if isinstance(doc, list) else doc
for c in doc["spec"]["template"]["spec"]["containers"]:
    if c["name"] == "manager":
        for e in c.get("env", []):
            if e["name"].lower() in ("https_proxy", "http_proxy", "no_proxy") and "value" in e:
                print(f'{e["name"]}={e["value"]}')
PY
)
    ((${#injected[@]} >= 4)) || die "fluxgate mutate injected no proxy environment"
    printf '%s\n' "${injected[@]}" >"$dir/source-controller.env"
    sc_env+=("${injected[@]}")
  fi

  # Scraping and the alert rules, with the lab's clock.
  "$PY" "$here/scale_rules.py" "$repo/alerts/fluxgate-rules.yaml" "$dir/rules.yaml" "$SCALE"
  cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: fluxgate
    static_configs: [{targets: ['127.0.0.1:$fg_metrics']}]
  - job_name: source-controller
    static_configs: [{targets: ['127.0.0.1:$sc_metrics']}]
EOF
  if [[ $lane == true ]]; then
    cat >>"$dir/prometheus.yml" <<EOF
  - job_name: source-controller-far
    static_configs: [{targets: ['127.0.0.1:$lane_metrics']}]
EOF
  fi
  start_bg prometheus "$dir/prometheus.log" prometheus --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/tsdb" --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
  wait_http "http://127.0.0.1:$prom_port/-/ready" prometheus

  # The platform's GitRepositories exist before source-controller starts: t=0 is its start, as
  # after a restart during the incident.
  local repo_timeout="$TIMEOUT_DEFAULT"
  ((SCALE == 1)) && repo_timeout=""
  log "setup $setup: creating $TOTAL GitRepositories ($((TOTAL - HEALTHY)) on the far host), spec.timeout '${repo_timeout:-CRD default}'"
  local -a populate_extra=() probe_extra=()
  case "$setup" in
    m | n)
      populate_extra=(--failing-annotation fluxgate.io/mirror=false)
      probe_extra=(--probe-url "http://$FAR_HOST:$tarpit_port" --probe-path example-org)
      ;;
  esac
  # The lane: the GitRepositories that exist before the rule carry the label from their creation,
  # as if the platform had labelled them (kubectl label; the webhook acts on CREATE only). The lab
  # registers the webhook before populating, so it would label them too; the explicit label keeps
  # the setup from depending on that, and lane-check below shows the webhook's own labelling.
  [[ $lane_rule == true ]] && populate_extra+=(--failing-label sharding.fluxcd.io/key=far)
  "$PY" "$here/driver.py" --api "$api" --pki "$pki" populate \
    --healthy-url "http://$NEAR_HOST:$near_port" --failing-url "http://$FAR_HOST:$tarpit_port" \
    --total "$TOTAL" --healthy "$HEALTHY" --timeout "$repo_timeout" "${populate_extra[@]}" >"$dir/populate.json"
  if [[ $lane_rule == true ]]; then
    "$PY" "$here/driver.py" --api "$api" --pki "$pki" lane-check --namespace proj-001 \
      --url "http://$FAR_HOST:$tarpit_port/example-org/proj-001.git" --expect far >"$dir/lane-check.json" \
      || die "the webhook did not put a new far-host GitRepository into the lane ($(cat "$dir/lane-check.json"))"
  fi

  mkdir -p "$dir/storage"
  local -a sc=("$SC_BIN" --concurrent=2 --storage-path="$dir/storage"
    --storage-addr="127.0.0.1:$sc_storage" --storage-adv-addr="127.0.0.1:$sc_storage"
    --metrics-addr="127.0.0.1:$sc_metrics" --health-addr="127.0.0.1:$sc_health"
    --enable-leader-election=false --watch-all-namespaces=true --log-level=info --log-encoding=json)
  # The lane's instance: deploy/lanes/component's arguments, its durations scaled.
  local -a sc_lane=()
  if [[ $lane == true ]]; then
    sc+=(--watch-label-selector='!sharding.fluxcd.io/key')
    mkdir -p "$dir/storage-far"
    sc_lane=("$SC_BIN" --concurrent="$LANE_CONCURRENT" --min-retry-delay="$(scaled "$LANE_MIN_RETRY")"
      --max-retry-delay="$(scaled "$LANE_MAX_RETRY")"
      --watch-label-selector=sharding.fluxcd.io/key=far --storage-path="$dir/storage-far"
      --storage-addr="127.0.0.1:$lane_storage" --storage-adv-addr="127.0.0.1:$lane_storage"
      --metrics-addr="127.0.0.1:$lane_metrics" --health-addr="127.0.0.1:$lane_health"
      --enable-leader-election=false --watch-all-namespaces=true --log-level=info --log-encoding=json)
  fi
  log "setup $1: source-controller $SC_VERSION starts (t=0); run ${run_seconds}s"
  local t0 outage_end=null egress_window=null
  t0="$(date +%s.%N)"
  if [[ "$setup" == f || "$setup" == fl ]]; then
    outage_end="$(awk -v t="$t0" -v f="$OUTAGE_END" -v r="$run_seconds" 'BEGIN { printf "%.3f", f * r }')"
    awk -v t="$t0" -v o="$outage_end" 'BEGIN { printf "%.3f\n", t + o }' >"$dir/outage-end"
  fi
  if [[ "$setup" == h ]]; then
    egress_window="$(awk -v w="$EGRESS_WINDOW" -v r="$run_seconds" 'BEGIN { split(w, a, ","); printf "[%.3f, %.3f]", a[1] * r, a[2] * r }')"
    awk -v t="$t0" -v w="$EGRESS_WINDOW" -v r="$run_seconds" 'BEGIN { split(w, a, ","); printf "%.3f %.3f\n", t + a[1] * r, t + a[2] * r }' >"$dir/outage-window"
  fi
  # A private mount namespace gives source-controller its own /etc/hosts (the lab's host names)
  # without touching the machine's.
  start_bg source-controller "$dir/source-controller.log" unshare -m sh -c \
    'mount --bind "$1" /etc/hosts && shift && exec env -i "$@"' sh "$dir/hosts" "${sc_env[@]}" "${sc[@]}"
  local sc_pid="$LAST_PID"
  local -a pids=(--pid "$sc_pid")
  if [[ $lane == true ]]; then
    start_bg source-controller-far "$dir/source-controller-far.log" unshare -m sh -c \
      'mount --bind "$1" /etc/hosts && shift && exec env -i "$@"' sh "$dir/hosts" "${sc_env[@]}" "${sc_lane[@]}"
    pids+=(--pid "$LAST_PID")
  fi
  if ((commits > 0)); then
    local -a far_repos repo_args=()
    mapfile -t far_repos < <("$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["failing_repos"]))' "$dir/populate.json")
    for r in "${far_repos[@]}"; do repo_args+=(--repo "$r"); done
    start_bg committer "$dir/committer.out" "$PY" "$here/netlab.py" committer --root "$LAB_DIR/git" \
      --every "$commits" --log "$dir/commits.csv" --max-seconds "$run_seconds" "${repo_args[@]}"
  fi
  sleep 1
  kill -0 "$sc_pid" 2>/dev/null || { tail -20 "$dir/source-controller.log" >&2; die "source-controller exited"; }
  if [[ $lane == true ]]; then
    kill -0 "${pids[3]}" 2>/dev/null || { tail -20 "$dir/source-controller-far.log" >&2; die "the lane's source-controller exited"; }
  fi

  local probes_abs
  probes_abs="$(awk -v p="$PROBES" -v r="$run_seconds" 'BEGIN { n = split(p, a, ","); for (i = 1; i <= n; i++) printf "%s%.1f", (i > 1 ? "," : ""), a[i] * r }')"
  "$PY" "$here/driver.py" --api "$api" --pki "$pki" sample \
    --healthy-url "http://$NEAR_HOST:$near_port" --timeout "$repo_timeout" "${probe_extra[@]}" \
    "${pids[@]}" --start "$t0" --duration "$run_seconds" --probes "$probes_abs" \
    --first-probe $((TOTAL + 1)) --out "$dir/samples.jsonl" --final "$dir/final.json" >"$dir/sample.out"

  log "setup $1: collecting"
  "$PY" "$here/prom_dump.py" --url "http://127.0.0.1:$prom_port" --start "$t0" \
    --end "$(date +%s.%N)" --out "$dir/prometheus.csv"
  "$FLUXGATE" report -f "$dir/final.json" -o json >"$dir/report.json" 2>"$dir/report.err" || true
  cat >"$dir/meta.json" <<EOF
{"setup": "$setup", "run": "$1", "t0": $t0, "run_seconds": $run_seconds, "scale": $SCALE,
 "timeout_default": "$TIMEOUT_DEFAULT", "timeout_webhook": "$TIMEOUT_WEBHOOK",
 "failing_for": "$( [[ $setup == c2 ]] && echo "$FAILING_FOR_SHORT" || echo "$FAILING_FOR")", "janitor_interval": "$JANITOR_INTERVAL",
 "total": $TOTAL, "healthy": $HEALTHY, "probes": "$probes_abs",
 "source_controller": "$SC_VERSION", "far_host": "$FAR_HOST", "mirror_host": "$MIRROR_HOST",
 "mirror_rule": "$( [[ $setup == m ]] && echo "http://$FAR_HOST:$tarpit_port/=http://$MIRROR_HOST:$git_port/")",
 "fluxgate": "$("$FLUXGATE" --version)", "commit": "$(git -C "$repo" rev-parse --short HEAD)", "fluxgate_src_commit": "$(git -C "$repo" log -1 --format=%h -- src Cargo.toml Cargo.lock)", "apiserver_port": "${APISERVER_URL##*:}",
 "outage_end": $outage_end, "return_after_probe": ${RETURN_AFTER_PROBE:-null}, "return_before_probe": ${RETURN_BEFORE_PROBE:-null},
 "egress_window": $egress_window, "egress_mode": "$EGRESS_MODE", "near_host": "$NEAR_HOST", "flaky_success": $( [[ $setup == g || $setup == lg || $setup == ag ]] && echo "$FLAKY_SUCCESS" || echo null), "flaky_seed": "$FLAKY_SEED",
 "breaker": "$( [[ $setup == [fghmn] || $setup == fl ]] && echo "${BREAKER_FLAGS[*]}")", "breaker_lane": "$( [[ $setup == fl ]] && echo far)",
 "lane": $lane, "lane_args": "${sc_lane[*]:1}", "lane_storage_port": "$lane_storage", "storage_port": "$sc_storage",
 "commit_every": $commits, "lane_floor": "$( [[ $lane == true ]] && scaled "$LANE_FLOOR")",
 "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "nproc": $(nproc)}
EOF
  stop_all
  controlplane down >/dev/null 2>&1 || true
}

prepare
for s in "${SETUPS[@]}"; do
  case "${s%%-*}" in a | b | c | c2 | d | e | f | fl | g | h | m | n | l | lg | ag) ;; *) die "unknown setup '$s' (a b c c2 d e f fl g h m n l lg ag)" ;; esac
done
log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${#SETUPS[@]} setups x ${RUN_SECONDS}s (f, fl, g, lg, ag: ${BREAKER_RUN_SECONDS}s; h: ${EGRESS_RUN_SECONDS}s), scale 1/$SCALE"
for s in "${SETUPS[@]}"; do
  run_setup "$s"
done
"$PY" "$here/analyze.py" --lab-dir "$LAB_DIR" --results "$RESULTS" "${SETUPS[@]}"
