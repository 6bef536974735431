#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and HTTP tests, the shipped
# monitoring checks, a bounded soak of the webhook, the end-to-end tests on a real
# kube-apiserver + etcd, and the install on a real node.
#   tests/all.sh            everything (builds the control plane and the node on first run: needs Go)
#   tests/all.sh --no-e2e   everything but the end-to-end tests and the node
#   tests/all.sh --no-node  everything but the install on a real node (it needs root)
#   tests/all.sh --no-soak  everything but the soak (it needs a release build and oha)
set -euo pipefail
cd "$(dirname "$0")/.."

run_e2e=1
run_node=1
run_soak=1
for arg in "$@"; do
  case "$arg" in
    --no-e2e) run_e2e=0; run_node=0 ;;
    --no-node) run_node=0 ;;
    --no-soak) run_soak=0 ;;
    *) echo "usage: tests/all.sh [--no-e2e] [--no-node] [--no-soak]" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ "${FLUXGATE_E2E_REQUIRED:-}" == 1 && ("$run_e2e" == 0 || "$run_node" == 0) ]]; then
  echo "FLUXGATE_E2E_REQUIRED=1 but --no-e2e/--no-node would skip the end-to-end suite" >&2
  exit 2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit, HTTP over TLS, CLI, fuzz, faults)"
# The e2e tests are #[ignore]d here (listed as ignored, not passed) and run for real in
# tests/e2e/run.sh below, with --include-ignored against the control plane it starts.
env -u FLUXGATE_E2E_REQUIRED -u FLUXGATE_E2E_KUBECONFIG cargo test --locked

if [[ -x tests/monitoring/check.sh ]]; then
  step "alert rules, dashboards and Alertmanager example (promtool, amtool)"
  tests/monitoring/check.sh
fi
if [[ -x tests/deploy/check.sh ]]; then
  step "deploy manifests"
  tests/deploy/check.sh
fi

if [[ "$run_soak" == 1 ]]; then
  step "soak: the webhook over TLS at 500 requests/s for 60 s (zero failures, flat RSS)"
  # The 10-minute soak is the script's default; this bounded run catches failures and leaks
  # of 100 bytes per request or more (see tests/load/soak.sh).
  SOAK_SECONDS=60 tests/load/soak.sh
fi

if [[ "$run_e2e" == 1 ]]; then
  step "end-to-end on a real control plane"
  tests/e2e/run.sh
fi

if [[ "$run_node" == 1 ]]; then
  step "install on a real node: the image, kubectl apply -k deploy/, rollout, source-controller"
  tests/e2e/node-run.sh
fi
