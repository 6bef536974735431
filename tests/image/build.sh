#!/usr/bin/env bash
# Builds the container images of the node tests as OCI image archives, with no container engine:
#
#   fluxgate           target/release/fluxgate (cargo build --release) with its shared libraries,
#                      the CA bundle and the nonroot user; USER, ENTRYPOINT, CMD and EXPOSE are
#                      read from the Dockerfile, so it starts exactly as the image users build
#                      from the Dockerfile (distroless cc-debian12:nonroot + /fluxgate) does.
#   source-controller  Flux's source-controller built from its Go module by lab/build.sh, as
#                      its release image runs it (/usr/local/bin/source-controller, uid 65534).
#
#   tests/image/build.sh [fluxgate|source-controller]...   archives in ${FLUXGATE_IMAGE_DIR:-target/images}
#
# Image names: ghcr.io/fluxgate/fluxgate:e2e and ghcr.io/fluxcd/source-controller:e2e; load them
# with `tests/e2e/node.sh import target/images/*.tar`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${FLUXGATE_IMAGE_DIR:-$repo/target/images}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$out"

build_fluxgate() {
  log "cargo build --release --bin fluxgate"
  (cd "$repo" && cargo build --release --locked --quiet --bin fluxgate) || die "cargo build --release failed"
  local bin="$target_dir/release/fluxgate"
  [[ -x "$bin" ]] || die "no $bin"
  python3 "$here/oci.py" --out "$out/fluxgate.tar" --name ghcr.io/fluxgate/fluxgate:e2e \
    --dockerfile "$repo/Dockerfile" --file "$bin:/fluxgate:0755" --libs >/dev/null
  log "fluxgate image: $out/fluxgate.tar ($(du -h "$out/fluxgate.tar" | cut -f1))"
}

build_source_controller() {
  "$repo/lab/build.sh" source-controller
  # shellcheck source=lab/lib/config.sh
  source "$repo/lab/lib/config.sh"
  python3 "$here/oci.py" --out "$out/source-controller.tar" --name ghcr.io/fluxcd/source-controller:e2e \
    --file "$SC_BIN:/usr/local/bin/source-controller:0755" --libs \
    --user 65534:65534 --entrypoint /usr/local/bin/source-controller --cmd >/dev/null
  log "source-controller image: $out/source-controller.tar ($(du -h "$out/source-controller.tar" | cut -f1))"
}

targets=("$@")
((${#targets[@]})) || targets=(fluxgate source-controller)
for t in "${targets[@]}"; do
  case "$t" in
    fluxgate) build_fluxgate ;;
    source-controller) build_source_controller ;;
    *) die "unknown image $t (fluxgate|source-controller)" ;;
  esac
done
