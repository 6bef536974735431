#!/usr/bin/env bash
# What happens when a GitRepository changes lane, with two real source-controllers: the main one
# (--watch-label-selector=!sharding.fluxcd.io/key) and a lane's (sharding.fluxcd.io/key=far),
# each with its own storage, artifact address and metrics/health ports, both with leader
# election on. A Ready, a failing (repository not found), a hanging (tarpit) GitRepository, and
# one that was Ready before its host went down, are moved main -> lane and lane -> main by
# changing the label; lab/lane_move.py drives the
# moves and records who reconciles what, the artifact URL, finalizers, the files in each
# storage, and what a consumer gets from status.artifact.url. Everything on 127.0.0.1; every
# process started here is stopped by pid on exit; about 5 minutes.
#
#   lab/lane_move.sh            results in lab/results/lane-move/ (report.md, moves.json)
#
# Knobs: LAB_DIR (default target/lab-move), LAB_RESULTS (default lab/results/lane-move),
# LAB_MOVE_HANG_TIMEOUT (spec.timeout of the hanging GitRepository, default 30s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lab/lib/config.sh
source "$here/lib/config.sh"

LAB_DIR="${LAB_DIR:-$repo/target/lab-move}"
RESULTS="${LAB_RESULTS:-$here/results/lane-move}"
HANG_TIMEOUT="${LAB_MOVE_HANG_TIMEOUT:-30s}"
PY=/usr/bin/python3
FAR_HOST=github.lab.test
NEAR_HOST=git.platform.lab.test

log() { printf '[lane-move %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

PIDS=()
start_bg() {
  local logfile="$1"
  shift
  "$@" >>"$logfile" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
}
controlplane() {
  FLUXGATE_E2E_DIR="$LAB_DIR/controlplane" FLUXGATE_SOURCE_CONTROLLER_VERSION="$SC_VERSION" \
    "$repo/tests/e2e/controlplane.sh" "$@"
}
cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  controlplane down >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x "$SC_BIN" ]] || die "no source-controller binary ($SC_BIN): lab/build.sh source-controller"
rm -rf "$LAB_DIR"
mkdir -p "$LAB_DIR/bin" "$LAB_DIR/storage-main" "$LAB_DIR/storage-far" "$RESULTS"

# One small repository on the in-house Git server; its history grows during the moves.
git init -q -b main "$LAB_DIR/src"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  revision: "0"\n' >"$LAB_DIR/src/app.yaml"
git -C "$LAB_DIR/src" add app.yaml
git -C "$LAB_DIR/src" -c user.name=platform -c user.email=platform@lab.test commit -q -m "revision 0"
mkdir -p "$LAB_DIR/git/platform"
git clone -q --bare "$LAB_DIR/src" "$LAB_DIR/git/platform/app.git"
mkdir -p "$LAB_DIR/git/example-org"
git clone -q --bare "$LAB_DIR/src" "$LAB_DIR/git/example-org/stale.git"

# Two names for the same binary: client-go's default User-Agent is the program's name, so the
# API server's audit log tells the two instances' requests apart.
ln -s "$SC_BIN" "$LAB_DIR/bin/source-controller"
ln -s "$SC_BIN" "$LAB_DIR/bin/source-controller-far"

log "control plane"
controlplane down >/dev/null 2>&1 || true
controlplane up >"$LAB_DIR/controlplane.out" 2>&1 || { cat "$LAB_DIR/controlplane.out" >&2; die "control plane"; }
eval "$(controlplane env)"
kubectl=("$FLUXGATE_E2E_KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout=30s)
"${kubectl[@]}" create namespace flux-system >/dev/null

git_port="$(free_port)"; tarpit_port="$(free_port)"; far_port="$(free_port)"
m_metrics="$(free_port)"; m_health="$(free_port)"; m_storage="$(free_port)"
f_metrics="$(free_port)"; f_health="$(free_port)"; f_storage="$(free_port)"
start_bg "$LAB_DIR/git.out" "$PY" "$here/netlab.py" git --port "$git_port" --root "$LAB_DIR/git" \
  --log "$LAB_DIR/git.csv" --max-seconds 900
start_bg "$LAB_DIR/tarpit.out" "$PY" "$here/netlab.py" tarpit --port "$tarpit_port" \
  --log "$LAB_DIR/tarpit.csv" --max-seconds 900
# A far host that serves until lane_move.py creates the down file, then tarpits.
start_bg "$LAB_DIR/farhost.out" "$PY" "$here/netlab.py" farhost --port "$far_port" --upstream "127.0.0.1:$git_port" \
  --down-file "$LAB_DIR/far-down" --log "$LAB_DIR/farhost.csv" --max-seconds 900

printf '127.0.0.1 localhost\n127.0.0.1 %s %s\n' "$FAR_HOST" "$NEAR_HOST" >"$LAB_DIR/hosts"
sc_env=(PATH=/usr/bin:/bin HOME="$LAB_DIR" KUBECONFIG="$KUBECONFIG" RUNTIME_NAMESPACE=flux-system)
common=(--enable-leader-election=true --watch-all-namespaces=true --log-level=debug --log-encoding=json)
start_sc() {
  local name="$1"
  shift
  # Leader election outside a cluster needs the namespace a Pod would find in its ServiceAccount
  # volume (source-controller sets no LeaderElectionNamespace): a tmpfs on /run in the private
  # mount namespace holds that one file; the machine's /run is untouched.
  start_bg "$LAB_DIR/$name.log" timeout 900 unshare -m sh -c \
    'mount --bind "$1" /etc/hosts && mount -t tmpfs tmpfs /run && sa=/run/secrets/kubernetes.io/serviceaccount &&
     mkdir -p "$sa" && printf flux-system >"$sa/namespace" && shift && exec env -i "$@"' sh "$LAB_DIR/hosts" "${sc_env[@]}" \
    "$LAB_DIR/bin/$name" "$@" "${common[@]}"
}
start_sc source-controller --watch-label-selector='!sharding.fluxcd.io/key' --concurrent=2 \
  --storage-path="$LAB_DIR/storage-main" --storage-addr="127.0.0.1:$m_storage" --storage-adv-addr="127.0.0.1:$m_storage" \
  --metrics-addr="127.0.0.1:$m_metrics" --health-addr="127.0.0.1:$m_health"
start_sc source-controller-far --watch-label-selector=sharding.fluxcd.io/key=far --concurrent=4 \
  --min-retry-delay=30s --max-retry-delay=30m \
  --storage-path="$LAB_DIR/storage-far" --storage-addr="127.0.0.1:$f_storage" --storage-adv-addr="127.0.0.1:$f_storage" \
  --metrics-addr="127.0.0.1:$f_metrics" --health-addr="127.0.0.1:$f_health"

log "two source-controllers: main storage :$m_storage, lane storage :$f_storage"
"$PY" "$here/lane_move.py" --api "$APISERVER_URL" --pki "$LAB_DIR/controlplane/pki" \
  --ready-url "http://$NEAR_HOST:$git_port/platform/app.git" \
  --missing-url "http://$NEAR_HOST:$git_port/platform/missing.git" \
  --hanging-url "http://$FAR_HOST:$tarpit_port/example-org/hanging.git" --hang-timeout "$HANG_TIMEOUT" \
  --stale-url "http://$FAR_HOST:$far_port/example-org/stale.git" --down-file "$LAB_DIR/far-down" \
  --repo "$LAB_DIR/git/platform/app.git" \
  --main-storage "$LAB_DIR/storage-main" --lane-storage "$LAB_DIR/storage-far" \
  --main-addr "127.0.0.1:$m_storage" --lane-addr "127.0.0.1:$f_storage" \
  --main-log "$LAB_DIR/source-controller.log" --lane-log "$LAB_DIR/source-controller-far.log" \
  --audit-log "$LAB_DIR/controlplane/logs/audit.log" --tarpit-log "$LAB_DIR/tarpit.csv" \
  --out "$RESULTS"
