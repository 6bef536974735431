# Sourced by the check scripts: pinned Go tools, built once per version.
#
# go_tool NAME PACKAGE@VERSION prints the path of the tool's binary, building it on first use with
# `go install` (GOFLAGS=-buildvcs=false GOWORK=off) into
# ${XDG_CACHE_HOME:-~/.cache}/fluxgate-tools/bin/NAME-VERSION; on failure it prints go's error on
# stderr and returns non-zero.
gobin=${XDG_CACHE_HOME:-$HOME/.cache}/fluxgate-tools/bin
go_tool() {
  local name=$1 pkg=$2 bin tmp
  bin="$gobin/$name-${pkg##*@}"
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null || { echo "no go to build $pkg" >&2; return 1; }
    echo "building $pkg (Go module proxy)" >&2
    tmp=$(mktemp -d)
    if ! GOBIN="$tmp" GOFLAGS=-buildvcs=false GOWORK=off go install "$pkg" >"$tmp/log" 2>&1; then
      cat "$tmp/log" >&2
      rm -rf "$tmp"
      return 1
    fi
    mkdir -p "$gobin" && mv "$tmp/$name" "$bin"
    rm -rf "$tmp"
  fi
  echo "$bin"
}
