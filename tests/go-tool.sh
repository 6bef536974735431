# Sourced by the check scripts: pinned Go tools, built once per version.
#
# go_tool NAME PACKAGE@VERSION [MODULE] prints the path of the tool's binary, building it on first
# use with `go install` (GOFLAGS=-buildvcs=false GOWORK=off) into
# ${XDG_CACHE_HOME:-~/.cache}/fluxgate-tools/bin/NAME-VERSION; on failure it prints go's error on
# stderr and returns non-zero.
#
# Some modules' version lists are not served here (HTTP 403), while their pinned versions are;
# `go install pkg@version` reads the list for deprecation notices and fails on them. Given MODULE
# (the module that holds PACKAGE), go_tool then builds PACKAGE from a small wrapper module that
# requires MODULE@VERSION, which only fetches pinned versions.
gobin=${XDG_CACHE_HOME:-$HOME/.cache}/fluxgate-tools/bin
go_tool() {
  local name=$1 pkg=$2 bin tmp
  bin="$gobin/$name-${pkg##*@}"
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null || { echo "no go to build $pkg" >&2; return 1; }
    echo "building $pkg (Go module proxy)" >&2
    tmp=$(mktemp -d)
    if ! GOBIN="$tmp" GOFLAGS=-buildvcs=false GOWORK=off go install "$pkg" >"$tmp/log" 2>&1 &&
      ! { [[ -n "${3:-}" ]] && go_tool_wrapped "$name" "$pkg" "$3" "$tmp" >>"$tmp/log" 2>&1; }; then
      cat "$tmp/log" >&2
      rm -rf "$tmp"
      return 1
    fi
    mkdir -p "$gobin" && mv "$tmp/$name" "$bin"
    rm -rf "$tmp"
  fi
  echo "$bin"
}

# Builds PACKAGE@VERSION ($2) of MODULE ($3) as $4/NAME ($1) through a wrapper module.
go_tool_wrapped() {
  local name=$1 pkg=${2%@*} version=${2##*@} module=$3 out=$4 wrapper
  wrapper="$out/wrapper"
  mkdir -p "$wrapper"
  printf 'module fluxgatetools\n\ngo 1.25\n\nrequire %s %s\n' "$module" "$version" >"$wrapper/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$wrapper/tools.go"
  (cd "$wrapper" && GOFLAGS="-buildvcs=false -mod=mod" GOWORK=off go mod tidy &&
    GOFLAGS=-buildvcs=false GOWORK=off go build -o "$out/$name" "$pkg")
}
