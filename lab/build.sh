#!/usr/bin/env bash
# Builds the lab's Flux source-controller from its Go module into a cache dir (not the repo),
# and fluxgate itself. Skips whatever is already built.
#
#   lab/build.sh              source-controller + fluxgate
#   lab/build.sh source-controller | fluxgate
#
# Env: FLUXGATE_LAB_SC_VERSION (default v1.10.1, the release whose CRDs the control plane
# installs), FLUXGATE_LAB_GOTOOLCHAIN (default go1.27.4: v1.10.x's go.mod says `go 1.27.0`
# and this machine's Go is 1.26; the toolchain comes from the Go module proxy),
# FLUXGATE_LAB_TOOLS_DIR (default ~/.cache/fluxgate-lab).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lab/lib/config.sh
source "$here/lib/config.sh"

log() { printf '[lab build] %s\n' "$*" >&2; }
die() { printf '[lab build] error: %s\n' "$*" >&2; exit 1; }

build_source_controller() {
  if [[ -x "$SC_BIN" ]]; then
    log "source-controller $SC_VERSION: cached ($SC_BIN)"
    return 0
  fi
  command -v go >/dev/null || die "go not found"
  # A caller's go.work or -mod=vendor must not reach the wrapper.
  export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN="$SC_GOTOOLCHAIN"
  local wrapper="$SC_DIR/wrapper" gomod go_line
  mkdir -p "$wrapper" "$SC_DIR/bin"
  gomod="$(go mod download -json "github.com/fluxcd/source-controller@$SC_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || die "cannot download github.com/fluxcd/source-controller@$SC_VERSION"
  go_line="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  # The release's go.mod replaces its api module with ./api, which only exists in its own tree:
  # point it at the published api module of the same version. Keep its other (remote) replaces.
  {
    printf 'module fluxgate.lab/sourcecontroller\n\ngo %s\n\n' "$go_line"
    printf 'require github.com/fluxcd/source-controller %s\n\n' "$SC_VERSION"
    printf 'replace github.com/fluxcd/source-controller/api => github.com/fluxcd/source-controller/api %s\n' "$SC_VERSION"
    awk '/^replace / && $0 !~ /=> \.\.?\// { print }' "$gomod"
    local r
    for r in $SC_EXTRA_REPLACES; do
      printf 'replace %s => %s %s\n' "${r%%=*}" "${r%%=*}" "${r#*=}"
    done
  } >"$wrapper/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/fluxcd/source-controller"\n' >"$wrapper/tools.go"
  # -e: tidy also walks the release's own tests, whose test-server modules the proxy may refuse;
  # the build below needs only the controller's packages.
  log "resolving github.com/fluxcd/source-controller@$SC_VERSION with $GOTOOLCHAIN (go $go_line)"
  (cd "$wrapper" && go mod tidy -e) || die "go mod tidy failed in $wrapper"
  log "building source-controller; minutes on a cold cache"
  local tmp="$SC_BIN.tmp.$$"
  local -a timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$SC_DIR/build.time")
  (cd "$wrapper" && "${timer[@]}" go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/fluxcd/source-controller) \
    || { rm -f "$tmp"; die "go build failed"; }
  mv -f "$tmp" "$SC_BIN"
  log "built $SC_BIN"
}

build_fluxgate() {
  if ! (cd "$repo" && cargo build --release --quiet); then
    # The tree may be mid-change; an earlier build of the same checkout still serves the lab.
    [[ -x "$repo/target/release/fluxgate" ]] || die "cargo build --release failed"
    log "cargo build --release failed; using the existing target/release/fluxgate"
  fi
}

targets=("$@")
((${#targets[@]})) || targets=(source-controller fluxgate)
for t in "${targets[@]}"; do
  case "$t" in
    source-controller) build_source_controller ;;
    fluxgate) build_fluxgate ;;
    *) die "unknown target $t" ;;
  esac
done
