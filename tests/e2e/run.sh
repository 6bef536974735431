#!/usr/bin/env bash
# The end-to-end suite: brings up the real control plane (tests/e2e/controlplane.sh), runs every
# tests/e2e_*.rs test target against it one test at a time, and tears it down again.
#
#   tests/e2e/run.sh [ARGS...]    ARGS go to the test binaries (e.g. a test name filter)
#
# The tests get FLUXGATE_E2E_KUBECONFIG, FLUXGATE_E2E_KUBECTL and the rest of
# `controlplane.sh env`, with FLUXGATE_E2E_REQUIRED=1 so that a missing control plane fails
# instead of skipping. A control plane that was already up before this script started is left
# running; otherwise it is stopped on exit (KEEP=1 keeps its data). On failure the tails of the
# apiserver and etcd logs are printed; the full logs stay in the state directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

cp=tests/e2e/controlplane.sh
state="${FLUXGATE_E2E_DIR:-$PWD/target/e2e}"

log() { printf '[e2e] %s\n' "$*" >&2; }

shopt -s nullglob
targets=(tests/e2e_*.rs)
shopt -u nullglob
if ((${#targets[@]} == 0)); then
  log "error: no tests/e2e_*.rs test targets"
  exit 1
fi

was_up=0
"$cp" status >/dev/null 2>&1 && was_up=1

finish() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then
    local name
    for name in apiserver etcd; do
      if [[ -f "$state/logs/$name.log" ]]; then
        printf '\n----- last 60 lines of %s -----\n' "$state/logs/$name.log" >&2
        tail -n 60 "$state/logs/$name.log" >&2
      fi
    done
    log "failed (exit $rc); logs in $state/logs"
  fi
  if ((was_up)); then
    log "leaving the control plane that was already running up"
  else
    "$cp" down || log "warning: controlplane.sh down failed"
  fi
  exit "$rc"
}
trap finish EXIT

kubeconfig="$("$cp" up | tail -n 1)"
[[ -f "$kubeconfig" ]] || { log "error: controlplane.sh up printed no kubeconfig path"; exit 1; }
eval "$("$cp" env)"
export FLUXGATE_E2E_KUBECONFIG="$kubeconfig" FLUXGATE_E2E_REQUIRED=1

log "running test targets ${targets[*]} against $APISERVER_URL"
# --no-fail-fast: one failing target must not hide the results of the others.
cargo test --locked --no-fail-fast --test 'e2e_*' -- --include-ignored --test-threads=1 "$@"
