#!/usr/bin/env bash
# Renders deploy/ (the base, its cert-manager and janitor-delete components, deploy/monitoring/)
# with kustomize and checks the result offline: objects, API field schema, hardening, exact RBAC,
# webhook registration, the monitoring wiring, and the Dockerfile. Writes nothing into the
# repository.
#   tests/deploy/check.sh
# Ends with "deploy: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

# Python with PyYAML and Debian's Kubernetes client models (the field schema, offline).
pick_python() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import yaml, kubernetes.client' 2>/dev/null; then
      command -v "$py"
      return
    fi
  done
}
python=$(pick_python)
if [[ -z "$python" ]]; then
  echo "installing python3-yaml, python3-kubernetes (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      python3-yaml python3-kubernetes >/dev/null; } || {
    echo "deploy: cannot install the Debian packages the checks need" >&2
    echo "deploy: 0 passed, 1 failed"
    exit 1
  }
  python=$(pick_python)
fi

# kustomize: a standalone binary, kubectl's built-in one, or built through the Go module proxy.
if [[ -z "${KUSTOMIZE:-}" ]]; then
  if command -v kustomize >/dev/null; then
    KUSTOMIZE="kustomize build"
  elif command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
    KUSTOMIZE="kubectl kustomize"
  elif command -v go >/dev/null; then
    gobin=${XDG_CACHE_HOME:-$HOME/.cache}/fluxgate-tools/bin
    if [[ ! -x "$gobin/kustomize" ]]; then
      echo "building kustomize (Go module proxy)" >&2
      GOBIN="$gobin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 >&2 || {
        echo "deploy: 0 passed, 1 failed"
        exit 1
      }
    fi
    KUSTOMIZE="$gobin/kustomize build"
  else
    echo "deploy: no kustomize, kubectl or go to render deploy/" >&2
    echo "deploy: 0 passed, 1 failed"
    exit 1
  fi
fi
export KUSTOMIZE
exec "$python" tests/deploy/deploy.py
