#!/usr/bin/env bash
# Builds the test control plane from Go modules into the tools cache
# (${FLUXGATE_TOOLS_DIR:-$HOME/.cache/fluxgate-e2e}); skips whatever is already there.
#
#   kube-apiserver, kubectl  k8s.io/kubernetes (versions.env). Its go.mod points every staging
#                            module (k8s.io/api, client-go, ...) at ./staging v0.0.0, so
#                            `go install pkg@version` refuses it; a generated wrapper module
#                            requires the release and replaces each staging module with its
#                            published v0.MINOR.PATCH, the list read from that release's go.mod.
#   etcd                     go.etcd.io/etcd/server/v3 (main package at the module root), same
#                            wrapper technique for its ../api, ../client/... replaces. Real etcd
#                            rather than kine: it is what kube-apiserver is tested against, and
#                            restart-etcd fault tests should exercise the real watch/compaction
#                            behaviour.
#   kubelet,                 the node beside the control plane (tests/e2e/node.sh): same module
#   kube-controller-manager, and version as kube-apiserver, in a wrapper of their own so that the
#   kube-scheduler           control plane's wrapper (shared with running suites) is untouched;
#                            GOCACHE is shared, so most packages are already compiled.
#   containerd, ctr,         the node's container runtime: github.com/containerd/containerd/v2
#   containerd-shim-runc-v2  (no local replaces, so plain `go install pkg@version`), static
#                            (CGO_ENABLED=0 leaves out only the btrfs snapshotter). Debian 12's
#                            containerd is 1.6, which current kubelets no longer support; runc and
#                            the CNI plugins come from Debian (tests/e2e/node.sh installs them).
#   Flux CRDs                config/crd/bases of github.com/fluxcd/source-controller, taken
#                            from the Go module cache.
#
# Usage: tests/controlplane/build.sh [all|node|kube-apiserver|kubectl|etcd|crds|kubelet|
#                                    kube-controller-manager|kube-scheduler|containerd]...
# `all` is the control plane only; `node` adds the node's Kubernetes components and containerd.
# Each go build is timed with /usr/bin/time -v (when present) into <dir>/build-<name>.time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/controlplane/paths.sh
source "$here/paths.sh"

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found on PATH: the control plane is built from Go modules"

# A go.work or GOFLAGS=-mod=vendor from the caller's environment must not leak into the wrappers.
export GOWORK=off GOFLAGS=-buildvcs=false

mkdir -p "$FLUXGATE_TOOLS_DIR"
# Serialise concurrent builds (two suites starting at once) on the same cache.
exec 9>"$FLUXGATE_TOOLS_DIR/.build.lock"
flock 9

# Field $1 of `go mod download -json` output on stdin.
json_field() {
  sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}$/\\1/p" | head -n1
}

# Field $2 of module@version $1 after downloading it into the module cache.
module_field() {
  local mod="$1" field="$2" json
  json="$(go mod download -json "$mod")" || die "go mod download $mod failed: $(json_field Error <<<"$json")"
  json_field "$field" <<<"$json"
}

# Writes a wrapper module in $1 around $2@$3 whose local (./ or ../) replaces are redirected to
# the published modules at version $4; non-local replaces are kept as they are. Remaining
# arguments are the main packages to build.
make_wrapper() {
  local dir="$1" mod="$2" version="$3" published="$4"
  shift 4
  local gomod go_directive replaces pkg
  gomod="$(module_field "$mod@$version" GoMod)"
  [[ -f "$gomod" ]] || die "no go.mod for $mod@$version"
  go_directive="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  replaces="$(awk -v published="$published" '
    /^replace[[:space:]]*\(/ { block = 1; next }
    block && /^\)/ { block = 0; next }
    {
      line = $0
      if (!block) { if (line !~ /^replace[[:space:]]/) next; sub(/^replace[[:space:]]+/, "", line) }
      n = split(line, f, /[[:space:]]+/)
      arrow = 0
      for (i = 1; i <= n; i++) if (f[i] == "=>") arrow = i
      if (!arrow) next
      lhs = (f[1] == "") ? f[2] : f[1]
      target = f[arrow + 1]
      if (target ~ /^\.\.?\//) print "\t" lhs " => " lhs " " published
      else { sub(/^[[:space:]]+/, "", line); print "\t" line }
    }' "$gomod")"
  [[ -n "$replaces" ]] || log "note: $mod@$version has no replace directives"

  mkdir -p "$dir"
  local new_gomod
  new_gomod="$(printf 'module fluxgate.test/controlplane\n\ngo %s\n\nrequire %s %s\n\nreplace (\n%s\n)\n' \
    "$go_directive" "$mod" "$version" "$replaces")"
  if [[ -f "$dir/go.mod.generated" && "$(cat "$dir/go.mod.generated")" == "$new_gomod" && -f "$dir/go.sum" ]]; then
    return 0
  fi
  printf '%s\n' "$new_gomod" >"$dir/go.mod"
  {
    printf '//go:build tools\n\n// Package tools pins the commands built from this wrapper module.\npackage tools\n\nimport (\n'
    for pkg in "$@"; do printf '\t_ "%s"\n' "$pkg"; done
    printf ')\n'
  } >"$dir/tools.go"
  log "resolving dependencies of $mod@$version ($(grep -c '=>' <<<"$replaces") replaces)"
  (cd "$dir" && go mod tidy) || die "go mod tidy failed in $dir"
  printf '%s\n' "$new_gomod" >"$dir/go.mod.generated"
}

# go build of package $3 from wrapper $1 into binary $2, timed, written atomically.
build_binary() {
  local wrapper="$1" out="$2" pkg="$3"
  shift 3
  local name tmp timing
  name="$(basename "$out")"
  mkdir -p "$(dirname "$out")"
  tmp="$out.tmp.$$"
  timing="$(dirname "$(dirname "$out")")/build-$name.time"
  local -a timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$timing")
  log "building $name ($pkg); this takes minutes on a cold cache"
  (cd "$wrapper" && "${timer[@]}" go build -trimpath "$@" -o "$tmp" "$pkg") \
    || { rm -f "$tmp"; die "go build $pkg failed${timer:+ (see $timing)}"; }
  mv -f "$tmp" "$out"
  if [[ -f "$timing" ]]; then
    log "$name: $(grep -E 'Elapsed \(wall' "$timing" | sed 's/.*: //') wall, $(grep -E 'Maximum resident' "$timing" | sed 's/.*: //') KiB peak RSS"
  fi
}

kube_ldflags() {
  local v="$FLUXGATE_KUBE_VERSION" major minor flags="-s -w" pkg
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  printf '%s' "$flags"
}

kube_wrapper() {
  local v="$FLUXGATE_KUBE_VERSION"
  # Staging modules are published as v0.MINOR.PATCH for release v1.MINOR.PATCH.
  make_wrapper "$KUBE_DIR/wrapper" k8s.io/kubernetes "$v" "v0.${v#v*.}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
}

build_kube_apiserver() {
  [[ -x "$KUBE_APISERVER_BIN" ]] && { log "kube-apiserver $FLUXGATE_KUBE_VERSION: cached"; return 0; }
  kube_wrapper
  build_binary "$KUBE_DIR/wrapper" "$KUBE_APISERVER_BIN" k8s.io/kubernetes/cmd/kube-apiserver \
    -ldflags "$(kube_ldflags)"
}

build_kubectl() {
  [[ -x "$KUBECTL_BIN" ]] && { log "kubectl $FLUXGATE_KUBE_VERSION: cached"; return 0; }
  kube_wrapper
  build_binary "$KUBE_DIR/wrapper" "$KUBECTL_BIN" k8s.io/kubernetes/cmd/kubectl \
    -ldflags "$(kube_ldflags)"
}

# The node's components come from their own wrapper: adding packages to the control plane's
# wrapper would rewrite the go.sum that concurrently running builds read.
kube_node_wrapper() {
  local v="$FLUXGATE_KUBE_VERSION"
  make_wrapper "$KUBE_DIR/node-wrapper" k8s.io/kubernetes "$v" "v0.${v#v*.}" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
}

# build_kube_node_binary NAME: cmd/NAME of k8s.io/kubernetes into $KUBE_DIR/bin/NAME.
build_kube_node_binary() {
  local name="$1" bin="$KUBE_DIR/bin/$1"
  [[ -x "$bin" ]] && { log "$name $FLUXGATE_KUBE_VERSION: cached"; return 0; }
  kube_node_wrapper
  build_binary "$KUBE_DIR/node-wrapper" "$bin" "k8s.io/kubernetes/cmd/$name" \
    -ldflags "$(kube_ldflags)"
}

build_etcd() {
  [[ -x "$ETCD_BIN" ]] && { log "etcd $FLUXGATE_ETCD_VERSION: cached"; return 0; }
  make_wrapper "$ETCD_DIR/wrapper" go.etcd.io/etcd/server/v3 "$FLUXGATE_ETCD_VERSION" \
    "$FLUXGATE_ETCD_VERSION" go.etcd.io/etcd/server/v3
  build_binary "$ETCD_DIR/wrapper" "$ETCD_BIN" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
}

build_containerd() {
  if [[ -x "$CONTAINERD_BIN" && -x "$CTR_BIN" && -x "$CONTAINERD_SHIM_BIN" ]]; then
    log "containerd $FLUXGATE_CONTAINERD_VERSION: cached"
    return 0
  fi
  local mod=github.com/containerd/containerd/v2 v="$FLUXGATE_CONTAINERD_VERSION"
  local bin_dir="$CONTAINERD_DIR/bin" tmp="$CONTAINERD_DIR/bin.tmp.$$" timing="$CONTAINERD_DIR/build-containerd.time"
  mkdir -p "$CONTAINERD_DIR"
  rm -rf "$tmp"
  local -a timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$timing")
  log "building containerd $v (containerd, ctr, containerd-shim-runc-v2)"
  GOBIN="$tmp" CGO_ENABLED=0 "${timer[@]}" go install -trimpath \
    -ldflags "-s -w -X $mod/version.Version=$v -X $mod/version.Revision=module" \
    "$mod/cmd/containerd@$v" "$mod/cmd/ctr@$v" "$mod/cmd/containerd-shim-runc-v2@$v" \
    || { rm -rf "$tmp"; die "go install containerd $v failed"; }
  rm -rf "$bin_dir"
  mv "$tmp" "$bin_dir"
  if [[ -f "$timing" ]]; then
    log "containerd: $(grep -E 'Elapsed \(wall' "$timing" | sed 's/.*: //') wall, $(grep -E 'Maximum resident' "$timing" | sed 's/.*: //') KiB peak RSS"
  fi
}

fetch_crds() {
  if compgen -G "$CRD_DIR/*.yaml" >/dev/null; then
    log "Flux CRDs $FLUXGATE_SOURCE_CONTROLLER_VERSION: cached"
    return 0
  fi
  local mod="github.com/fluxcd/source-controller@$FLUXGATE_SOURCE_CONTROLLER_VERSION"
  local json dir zip tmp
  # Recent source-controller releases require a newer Go than the local one; go mod download then
  # fetches and verifies the module zip but refuses to extract it. Only YAML is needed, so the
  # verified zip is read directly instead of fetching a whole Go toolchain.
  json="$(go mod download -json "$mod" 2>/dev/null || true)"
  dir="$(json_field Dir <<<"$json")"
  zip="$(json_field Zip <<<"$json")"
  tmp="$CRD_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if [[ -n "$dir" ]] && compgen -G "$dir/config/crd/bases/*.yaml" >/dev/null; then
    cp "$dir"/config/crd/bases/*.yaml "$tmp/"
  elif [[ -n "$zip" && -f "$zip" && -f "${zip%.zip}.ziphash" \
    && "$(<"${zip%.zip}.ziphash")" == "$(json_field Sum <<<"$json")" ]]; then
    log "extracting CRDs from the verified module zip (module needs a newer Go: $(json_field Error <<<"$json"))"
    python3 - "$zip" "$tmp" "$mod/config/crd/bases/" <<'PY' || die "cannot read CRDs from $zip"
import os, sys, zipfile
zip_path, out, prefix = sys.argv[1:]
with zipfile.ZipFile(zip_path) as z:
    names = [n for n in z.namelist()
             if n.startswith(prefix) and n.endswith(".yaml") and "/" not in n[len(prefix):]]
    for n in names:
        with open(os.path.join(out, os.path.basename(n)), "wb") as f:
            f.write(z.read(n))
sys.exit(0 if names else 1)
PY
  else
    rm -rf "$tmp"
    die "go mod download $mod failed: $(json_field Error <<<"$json")"
  fi
  chmod u+w "$tmp"/*.yaml
  rm -rf "$CRD_DIR"
  mv "$tmp" "$CRD_DIR"
  log "Flux CRDs $FLUXGATE_SOURCE_CONTROLLER_VERSION copied to $CRD_DIR"
}

targets=("$@")
((${#targets[@]})) || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all) build_etcd; build_kube_apiserver; build_kubectl; fetch_crds ;;
    kube-apiserver) build_kube_apiserver ;;
    kubectl) build_kubectl ;;
    etcd) build_etcd ;;
    crds) fetch_crds ;;
    node)
      for c in kubelet kube-controller-manager kube-scheduler; do build_kube_node_binary "$c"; done
      build_containerd
      ;;
    containerd) build_containerd ;;
    kubelet | kube-controller-manager | kube-scheduler) build_kube_node_binary "$t" ;;
    *) die "unknown target '$t' (all|node|kube-apiserver|kubectl|etcd|crds|kubelet|kube-controller-manager|kube-scheduler|containerd)" ;;
  esac
done
