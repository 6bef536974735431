# Where the built control plane lives; sourced by build.sh and tests/e2e/controlplane.sh.
# shellcheck shell=bash disable=SC2034
# Not exported: etcd reads every ETCD_* environment variable as a flag.
# shellcheck source=tests/controlplane/versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"

KUBE_DIR="$FLUXGATE_TOOLS_DIR/kubernetes-$FLUXGATE_KUBE_VERSION"
KUBE_APISERVER_BIN="$KUBE_DIR/bin/kube-apiserver"
KUBECTL_BIN="$KUBE_DIR/bin/kubectl"
ETCD_DIR="$FLUXGATE_TOOLS_DIR/etcd-$FLUXGATE_ETCD_VERSION"
ETCD_BIN="$ETCD_DIR/bin/etcd"
CRD_DIR="$FLUXGATE_TOOLS_DIR/crds/source-controller-$FLUXGATE_SOURCE_CONTROLLER_VERSION"
KUBELET_BIN="$KUBE_DIR/bin/kubelet"
KUBE_CONTROLLER_MANAGER_BIN="$KUBE_DIR/bin/kube-controller-manager"
KUBE_SCHEDULER_BIN="$KUBE_DIR/bin/kube-scheduler"
CONTAINERD_DIR="$FLUXGATE_TOOLS_DIR/containerd-$FLUXGATE_CONTAINERD_VERSION"
CONTAINERD_BIN="$CONTAINERD_DIR/bin/containerd"
CTR_BIN="$CONTAINERD_DIR/bin/ctr"
CONTAINERD_SHIM_BIN="$CONTAINERD_DIR/bin/containerd-shim-runc-v2"
