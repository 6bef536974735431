#!/usr/bin/env bash
# Renders deploy/ (the base, its cert-manager, janitor-delete and native-admission components,
# deploy/monitoring/, and the host lane component over deploy/lanes/example) with kustomize and
# checks the result offline: objects, API field schema,
# hardening, exact RBAC, webhook registration, NetworkPolicy, the monitoring wiring, kube-score (and kube-linter where
# it can be installed), and the Dockerfile. Writes nothing into the repository.
#   tests/deploy/check.sh
# Ends with "deploy: N passed, M failed" (", K skipped" when kube-linter cannot be installed);
# exits non-zero on any failure.
#
# Go tools are built once per pinned version into ${XDG_CACHE_HOME:-~/.cache}/fluxgate-tools/bin
# (GOFLAGS=-buildvcs=false GOWORK=off); their build times are in deploy/README.md.
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

# shellcheck source=tests/go-tool.sh
source tests/go-tool.sh

# kube-score, pinned; required (deploy.py fails its checks without it).
KUBE_SCORE=$(go_tool kube-score github.com/zegl/kube-score/cmd/kube-score@v1.20.0) || KUBE_SCORE=
# kube-linter, pinned; run where it can be installed. Its module host is not served by every
# Go module proxy: then its checks are reported skipped, and deploy/README.md answers them.
KUBE_LINTER_MODULE=golang.stackrox.io/kube-linter/cmd/kube-linter@v0.8.3
if command -v kube-linter >/dev/null; then
  KUBE_LINTER=$(command -v kube-linter)
elif ! KUBE_LINTER=$(go_tool kube-linter "$KUBE_LINTER_MODULE" 2>"${TMPDIR:-/tmp}/fluxgate-kube-linter.$$"); then
  KUBE_LINTER=
  KUBE_LINTER_MISSING="$KUBE_LINTER_MODULE cannot be installed here: $(grep -m1 -iE 'error|forbidden|not available|no go' "${TMPDIR:-/tmp}/fluxgate-kube-linter.$$" || tail -n1 "${TMPDIR:-/tmp}/fluxgate-kube-linter.$$")"
fi
rm -f "${TMPDIR:-/tmp}/fluxgate-kube-linter.$$"
export KUBE_SCORE KUBE_LINTER KUBE_LINTER_MISSING

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
