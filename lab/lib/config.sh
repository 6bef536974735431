# shellcheck shell=bash disable=SC2034
# Versions and paths shared by the lab scripts.
# v1.10.x needs Go 1.27 (reachable as a toolchain module), but several of its dependencies
# (fluxcd/pkg/artifact v0.27.1, pkg/spiffe v0.2.0, ...) are not served by the module proxy here;
# v1.9.6 is the newest release that resolves, and its go.mod asks for Go 1.26.
SC_VERSION="${FLUXGATE_LAB_SC_VERSION:-v1.9.6}"
SC_GOTOOLCHAIN="${FLUXGATE_LAB_GOTOOLCHAIN:-local}"
# Dependency versions the module proxy here refuses (403), pinned to the nearest version it
# serves. v1.9.6 asks for github.com/fluxcd/pkg/artifact v0.18.3; v0.18.0 is the same minor line
# (artifact storage/digest helpers; the Git clone path does not go through it).
SC_EXTRA_REPLACES="${FLUXGATE_LAB_SC_REPLACES-github.com/fluxcd/pkg/artifact=v0.18.0}"
LAB_TOOLS_DIR="${FLUXGATE_LAB_TOOLS_DIR:-$HOME/.cache/fluxgate-lab}"
SC_DIR="$LAB_TOOLS_DIR/source-controller-$SC_VERSION"
SC_BIN="$SC_DIR/bin/source-controller"
