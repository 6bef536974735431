#!/usr/bin/env bash
# Builds kube-state-metrics, the baseline fluxgate's exporter is compared with, from its Go module
# into the tools cache; does nothing when the binary is already there. Prints the binary's path.
#
#   tests/load/exporter/build-ksm.sh
#
# KSM_VERSION: the newest release the Go module proxy serves here. The module has no replace
# directives, but `go install module@version` still fails: it asks the proxy for the module's
# version list (for deprecation notices), which is refused. A wrapper module that requires the
# exact version builds the same main package without that request.
set -euo pipefail

: "${KSM_VERSION:=v2.20.0}"
: "${FLUXGATE_TOOLS_DIR:=$HOME/.cache/fluxgate-e2e}"
dir="$FLUXGATE_TOOLS_DIR/ksm/$KSM_VERSION"
bin="$dir/bin/kube-state-metrics"

build() {
  local src="$dir/src" go_directive
  rm -rf "$src"
  mkdir -p "$src" "$dir/bin"
  # The wrapper needs the Go version the release asks for, or the go command refuses it.
  local gomod
  gomod="$(GOWORK=off go mod download -json "k8s.io/kube-state-metrics/v2@$KSM_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  go_directive="$(awk '$1 == "go" { print $2; exit }' "$gomod" 2>/dev/null || true)"
  [[ -n "$go_directive" ]] || { echo "error: cannot read go.mod of kube-state-metrics $KSM_VERSION" >&2; exit 1; }
  cat >"$src/go.mod" <<MOD
module fluxgate.local/ksm-build

go $go_directive

require k8s.io/kube-state-metrics/v2 $KSM_VERSION
MOD
  # Keeps the main package in the wrapper's build list for `go mod tidy`.
  cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kube-state-metrics/v2"
GO
  local -a timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$dir/build.time")
  (
    cd "$src"
    go mod tidy
    "${timer[@]}" go build -trimpath -o "$bin.tmp" k8s.io/kube-state-metrics/v2
  )
  mv -f "$bin.tmp" "$bin"
}

if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "error: go not found on PATH" >&2; exit 1; }
  mkdir -p "$dir"
  exec 9>"$dir/.build.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    echo "[ksm] building k8s.io/kube-state-metrics/v2@$KSM_VERSION into $dir (once)" >&2
    # A go.work or vendor mode from the caller's environment must not leak into the build.
    GOWORK=off GOFLAGS=-buildvcs=false build >&2
  fi
fi
printf '%s\n' "$bin"
