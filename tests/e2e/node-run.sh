#!/usr/bin/env bash
# The install tests on a real node: builds the images (tests/image/build.sh), brings the node up
# (tests/e2e/node.sh), loads the images into its containerd, runs tests/e2e/node/suite.py and
# takes the node down again (KEEP_NODE=1 leaves it up).
#
#   tests/e2e/node-run.sh [TEST...]    install rollout proxy components (default: all)
#
# Ends with the suite's "node: N passed, M failed"; on failure the tails of the node's logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

node=tests/e2e/node.sh
state="${FLUXGATE_NODE_DIR:-$PWD/target/e2e-node}"

log() { printf '[node-e2e] %s\n' "$*" >&2; }

finish() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then
    local name
    for name in kubelet containerd kube-controller-manager; do
      if [[ -f "$state/logs/$name.log" ]]; then
        printf '\n----- last 30 lines of %s -----\n' "$state/logs/$name.log" >&2
        tail -n 30 "$state/logs/$name.log" >&2
      fi
    done
    log "failed (exit $rc); logs in $state/logs"
  fi
  if [[ "${KEEP_NODE:-0}" == 1 ]]; then
    log "leaving the node up (KEEP_NODE=1): tests/e2e/node.sh down"
  else
    "$node" down || log "warning: node.sh down failed"
  fi
  exit "$rc"
}

t0=$SECONDS
tests/image/build.sh
log "images built in $((SECONDS - t0))s"
trap finish EXIT
t1=$SECONDS
"$node" up | tail -n 1 >/dev/null
log "node up in $((SECONDS - t1))s"
"$node" import target/images/fluxgate.tar target/images/source-controller.tar
eval "$("$node" env)"
export FLUXGATE_E2E_KUBECONFIG="$KUBECONFIG"
t2=$SECONDS
python3 tests/e2e/node/suite.py "$@"
log "suite ran in $((SECONDS - t2))s"
