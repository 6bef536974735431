#!/usr/bin/env bash
# A real single-node cluster for the install tests: a control plane of its own
# (tests/e2e/controlplane.sh with FLUXGATE_E2E_NODE=1), plus kube-controller-manager,
# kube-scheduler, containerd v2 with Debian's runc and CNI plugins, and a kubelet, all on this
# host. Pods run in network namespaces on a bridge this script creates.
#
#   tests/e2e/node.sh up            build if needed, start, wait for the node to be Ready; the
#                                   kubeconfig path is the last line of stdout
#   tests/e2e/node.sh import TAR... load OCI image archives into the node's containerd
#   tests/e2e/node.sh env           `export` lines (the control plane's, plus the node's)
#   tests/e2e/node.sh status        exit 0 when every process is up and the node is Ready
#   tests/e2e/node.sh down          remove Pods, stop everything, undo mounts, cgroups, the bridge
#                                   and the iptables rules; keeps logs
#
# State: ${FLUXGATE_NODE_DIR:-<repo>/target/e2e-node} (the control plane's in controlplane/);
# sockets and runtime state in /run/fluxgate-node-<hash of that path>.
# Needs root (namespaces, mounts, cgroups, a bridge); installs runc, containernetworking-plugins
# and iptables from Debian when missing.
#
# Network (each overridable from the environment):
#   bridge fluxgate-nd0 with 10.244.77.1/24 (FLUXGATE_NODE_BRIDGE, FLUXGATE_NODE_POD_CIDR): Pod
#     IPs, reached from the host by the kube-apiserver (webhook calls to endpoints), the kubelet
#     (probes) and the tests (/metrics);
#   the kubelet listens on the bridge address; nothing listens on the host's other addresses;
#   no kube-proxy: one DNAT rule makes the API server's ClusterIP (10.0.0.1:443) reach the
#     kube-apiserver on 127.0.0.1 (route_localnet on the bridge only); Pods' packets to anything
#     but the bridge's subnet and that address are dropped (ip_forward is left as it is: off
#     here), so nothing from a Pod leaves this host;
#   Pods get no DNS server (resolvConf ""): fluxgate and source-controller reach the API server
#     by IP.
# cgroup v1 (this host's hierarchy) is refused by current kubelets unless failCgroupV1: false,
# which the node's configuration sets. Root here lacks CAP_SYS_RESOURCE, so containerd runs with
# restrict_oom_score_adj (as rootless setups do).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/controlplane/paths.sh
source "$repo/tests/controlplane/paths.sh"

STATE="${FLUXGATE_NODE_DIR:-$repo/target/e2e-node}"
CP_STATE="$STATE/controlplane"
LOGS="$STATE/logs"
PKI="$STATE/pki"
# Sockets and the runtime's state: under /run, as a unix socket path must stay short whatever the
# checkout's path; one directory per state dir.
RUN="${FLUXGATE_NODE_RUN_DIR:-/run/fluxgate-node-$(printf '%s' "$STATE" | sha256sum | cut -c1-10)}"
NODE_NAME="${FLUXGATE_NODE_NAME:-fluxgate-e2e-node}"
BRIDGE="${FLUXGATE_NODE_BRIDGE:-fluxgate-nd0}"
POD_CIDR="${FLUXGATE_NODE_POD_CIDR:-10.244.77.0/24}"
GATEWAY="${POD_CIDR%.*}.1"
API_SERVICE_IP=10.0.0.1
SOCK="$RUN/containerd.sock"
PAUSE_IMAGE=localhost/fluxgate-e2e/pause:1
CHAIN=FLUXGATE-NODE
READY_TIMEOUT="${FLUXGATE_NODE_READY_TIMEOUT:-180}"
CP="$here/controlplane.sh"

log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] error: %s\n' "$*" >&2; exit 1; }

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

cp_() { FLUXGATE_E2E_DIR="$CP_STATE" FLUXGATE_E2E_NODE=1 "$CP" "$@"; }
kubectl_() { "$KUBECTL_BIN" --kubeconfig="$CP_STATE/kubeconfig" --request-timeout=30s "$@"; }
ctr_() { "$CTR_BIN" --address "$SOCK" -n k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------
# prerequisites

ensure_packages() {
  ((EUID == 0)) || die "the node needs root (network namespaces, mounts, cgroups)"
  local -a need=()
  [[ -x /usr/sbin/runc ]] || need+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v cc >/dev/null || need+=(gcc libc6-dev)
  if ((${#need[@]})); then
    log "installing ${need[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } \
      || die "apt-get install ${need[*]} failed"
  fi
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || die "no memory cgroup"
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# ---------------------------------------------------------------------------------------------
# processes (same conventions as controlplane.sh: pid files checked against the binary)

pid_file() { printf '%s/%s.pid' "$STATE" "$1"; }

bin_of() {
  case "$1" in
    containerd) printf '%s' "$CONTAINERD_BIN" ;;
    kubelet) printf '%s' "$KUBELET_BIN" ;;
    kube-controller-manager) printf '%s' "$KUBE_CONTROLLER_MANAGER_BIN" ;;
    kube-scheduler) printf '%s' "$KUBE_SCHEDULER_BIN" ;;
  esac
}

running_pid() {
  local file pid exe bin
  file="$(pid_file "$1")"
  bin="$(bin_of "$1")"
  [[ -f "$file" ]] || return 1
  pid="$(<"$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "$exe" == "$bin" || "$exe" == "$bin (deleted)" ]] || return 1
  printf '%s' "$pid"
}

spawn() {
  local name="$1" pid
  shift
  mkdir -p "$LOGS"
  printf '\n===== %s start %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$LOGS/$name.log"
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$name")"
  sleep 0.5
  kill -0 "$pid" 2>/dev/null || { tail_log "$name"; die "$name exited at once (log: $LOGS/$name.log)"; }
}

tail_log() {
  [[ -f "$LOGS/$1.log" ]] || return 0
  printf '\n----- last %s lines of %s -----\n' "${2:-40}" "$LOGS/$1.log" >&2
  tail -n "${2:-40}" "$LOGS/$1.log" >&2
}

stop_pid() {
  local name="$1" pid="$2" timeout="${3:-20}" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not stop within ${timeout}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

stop_process() {
  local pid
  if pid="$(running_pid "$1")"; then
    log "stopping $1 (pid $pid)"
    stop_pid "$1" "$pid" "${2:-20}"
  fi
  rm -f "$(pid_file "$1")"
}

# The runc shims of this node's containerd: they outlive containerd by design.
our_shims() {
  local pid exe
  for pid in $(pgrep -f -- "-address $SOCK" 2>/dev/null || true); do
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
    [[ "$exe" == "$CONTAINERD_SHIM_BIN" || "$exe" == "$CONTAINERD_SHIM_BIN (deleted)" ]] && echo "$pid"
  done
}

# ---------------------------------------------------------------------------------------------
# certificates: the kubelet's client identity (system:node:NAME) and its serving certificate

gen_node_pki() {
  [[ -f "$PKI/kubelet.crt" && -f "$PKI/node.crt" ]] && return 0
  local cp_pki="$CP_STATE/pki"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  (
    cd "$PKI"
    openssl genrsa -out node.key 2048 2>/dev/null
    openssl req -new -key node.key -subj "/O=system:nodes/CN=system:node:$NODE_NAME" -out node.csr
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >node.ext
    openssl x509 -req -in node.csr -CA "$cp_pki/client-ca.crt" -CAkey "$cp_pki/client-ca.key" \
      -CAcreateserial -CAserial client.srl -days 365 -sha256 -extfile node.ext -out node.crt 2>/dev/null
    openssl genrsa -out kubelet.key 2048 2>/dev/null
    openssl req -new -key kubelet.key -subj "/CN=$NODE_NAME" -out kubelet.csr
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:%s\n' \
      "$GATEWAY" "$NODE_NAME" >kubelet.ext
    openssl x509 -req -in kubelet.csr -CA "$cp_pki/ca.crt" -CAkey "$cp_pki/ca.key" \
      -CAcreateserial -CAserial serving.srl -days 365 -sha256 -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  ) || die "node certificate generation failed"
  local server ca
  server="$(awk '/server:/ { print $2; exit }' "$CP_STATE/kubeconfig")"
  ca="$(base64 -w0 "$cp_pki/ca.crt")"
  cat >"$STATE/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fluxgate-e2e
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $NODE_NAME
  user:
    client-certificate: $PKI/node.crt
    client-key: $PKI/node.key
contexts:
- name: node
  context: { cluster: fluxgate-e2e, user: $NODE_NAME }
current-context: node
EOF
}

# ---------------------------------------------------------------------------------------------
# network

# Lines of `iptables -S`-style rules this script owns: a chain of its own per hook.
net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Only this bridge may carry packets addressed to 127.0.0.1 (the DNAT below).
  sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
  net_rules_down
  # shellcheck source=/dev/null
  source "$CP_STATE/ports.env"
  iptables -t nat -N "$CHAIN"
  iptables -t nat -A "$CHAIN" -d "$API_SERVICE_IP/32" -p tcp --dport 443 \
    -j DNAT --to-destination "127.0.0.1:$APISERVER_PORT"
  iptables -t nat -I PREROUTING -i "$BRIDGE" -j "$CHAIN"
  iptables -N "$CHAIN-IN"
  iptables -A "$CHAIN-IN" -d "$GATEWAY/32" -j RETURN
  iptables -A "$CHAIN-IN" -m conntrack --ctstate DNAT -j RETURN
  iptables -A "$CHAIN-IN" -j DROP
  iptables -I INPUT -i "$BRIDGE" -j "$CHAIN-IN"
  iptables -N "$CHAIN-FWD"
  iptables -A "$CHAIN-FWD" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
  iptables -A "$CHAIN-FWD" -i "$BRIDGE" -j DROP
  iptables -A "$CHAIN-FWD" -o "$BRIDGE" -j DROP
  iptables -I FORWARD -j "$CHAIN-FWD"
}

net_rules_down() {
  command -v iptables >/dev/null || return 0
  while iptables -t nat -D PREROUTING -i "$BRIDGE" -j "$CHAIN" 2>/dev/null; do :; done
  while iptables -D INPUT -i "$BRIDGE" -j "$CHAIN-IN" 2>/dev/null; do :; done
  while iptables -D FORWARD -j "$CHAIN-FWD" 2>/dev/null; do :; done
  iptables -t nat -F "$CHAIN" 2>/dev/null && iptables -t nat -X "$CHAIN" 2>/dev/null
  iptables -F "$CHAIN-IN" 2>/dev/null && iptables -X "$CHAIN-IN" 2>/dev/null
  iptables -F "$CHAIN-FWD" 2>/dev/null && iptables -X "$CHAIN-FWD" 2>/dev/null
  return 0
}

net_down() {
  net_rules_down
  local veth
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

write_cni_config() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-fluxgate-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "fluxgate-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
}

# ---------------------------------------------------------------------------------------------
# containerd

start_containerd() {
  mkdir -p "$RUN" "$STATE/containerd"
  ((${#SOCK} < 100)) || die "containerd socket path too long for a unix socket: $SOCK"
  cat >"$STATE/containerd.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.grpc.v1.cri.tcp"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = "$RUN/containerd-debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # This host's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's
  # own (the kubelet asks -998 for sandboxes), so keep every container at or above it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$RUN/runc"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  # The shim is found next to containerd through PATH.
  spawn containerd env PATH="$CONTAINERD_DIR/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "$CONTAINERD_BIN" --config "$STATE/containerd.toml"
  local deadline=$((SECONDS + 60))
  until ctr_ version >/dev/null 2>&1; do
    running_pid containerd >/dev/null || { tail_log containerd; die "containerd exited"; }
    ((SECONDS < deadline)) || { tail_log containerd; die "containerd not answering on $SOCK after 60s"; }
    sleep 0.5
  done
  log "containerd $FLUXGATE_CONTAINERD_VERSION up on $SOCK"
}

# The sandbox ("pause") image: containerd's default one would be pulled from a registry.
load_pause_image() {
  ctr_ images ls -q | grep -qx "$PAUSE_IMAGE" && return 0
  local dir="$STATE/images"
  mkdir -p "$dir"
  cc -static -O2 -o "$dir/pause" "$repo/tests/image/pause.c" || die "cannot build the pause program"
  python3 "$repo/tests/image/oci.py" --out "$dir/pause.tar" --name "$PAUSE_IMAGE" \
    --file "$dir/pause:/pause:0755" --entrypoint /pause --user 65535:65535 >/dev/null
  import_images "$dir/pause.tar"
}

import_images() {
  local tar
  for tar in "$@"; do
    [[ -f "$tar" ]] || die "no image archive $tar"
    ctr_ images import --snapshotter overlayfs "$tar" >&2 \
      || die "ctr images import $tar failed"
  done
}

# ---------------------------------------------------------------------------------------------
# Kubernetes components

start_kubelet() {
  local kport hport
  kport="$(free_port)"
  hport="$(free_port)"
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host mounts cgroup v1 hierarchies.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $GATEWAY
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $CP_STATE/pki/client-ca.crt }
authorization:
  mode: Webhook
resolvConf: ""
podLogsDir: $STATE/pod-logs
failSwapOn: false
maxPods: 40
serializeImagePulls: false
# A test node on a shared disk: never evict for disk pressure, never collect the imported images.
evictionHard:
  memory.available: 200Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\n' "$kport" "$hport" >"$STATE/node-ports.env"
  spawn kubelet "$KUBELET_BIN" \
    --config="$STATE/kubelet.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$STATE/kubelet" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$GATEWAY" \
    --v=1
}

start_controller_manager() {
  spawn kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig="$CP_STATE/kubeconfig" \
    --authentication-kubeconfig="$CP_STATE/kubeconfig" \
    --authorization-kubeconfig="$CP_STATE/kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$(free_port)" \
    --leader-elect=false \
    --service-account-private-key-file="$CP_STATE/pki/sa.key" \
    --root-ca-file="$CP_STATE/pki/ca.crt" \
    --use-service-account-credentials=false \
    --cluster-name=fluxgate-e2e \
    --v=1
}

start_scheduler() {
  spawn kube-scheduler "$KUBE_SCHEDULER_BIN" \
    --kubeconfig="$CP_STATE/kubeconfig" \
    --authentication-kubeconfig="$CP_STATE/kubeconfig" \
    --authorization-kubeconfig="$CP_STATE/kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$(free_port)" \
    --leader-elect=false \
    --v=1
}

wait_node_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) name
  while ((SECONDS < deadline)); do
    for name in containerd kubelet kube-controller-manager kube-scheduler; do
      running_pid "$name" >/dev/null || { tail_log "$name"; die "$name exited (log: $LOGS/$name.log)"; }
    done
    if [[ "$(kubectl_ get node "$NODE_NAME" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] \
      && kubectl_ get serviceaccount default -n default >/dev/null 2>&1; then
      log "node $NODE_NAME Ready"
      return 0
    fi
    sleep 1
  done
  kubectl_ describe node "$NODE_NAME" >&2 || true
  tail_log kubelet 60
  die "node $NODE_NAME not Ready after ${READY_TIMEOUT}s (logs: $LOGS)"
}

# ---------------------------------------------------------------------------------------------
# teardown of what the kubelet and containerd leave on the host

# Pods first, through the kubelet, so that CNI DEL runs and volumes are unmounted properly.
drain_pods() {
  running_pid kubelet >/dev/null || return 0
  kubectl_ delete pods --all-namespaces --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 40))
  while ((SECONDS < deadline)); do
    [[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ]] && return 0
    sleep 1
  done
  log "containers still running after 40s; killing them"
}

kill_containers() {
  running_pid containerd >/dev/null || return 0
  local id
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$id" >/dev/null 2>&1 || true; done
  for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$id" >/dev/null 2>&1 || true; done
}

# Mounts below the state dir and the network namespaces of our sandboxes, deepest first.
unmount_all() {
  local m
  for m in $(awk -v s="$STATE/" -v r="$RUN/" 'index($5, s) == 1 || index($5, r) == 1 { print $5 }' \
    /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if [[ -f "$STATE/netns.list" ]]; then
    while read -r m; do
      [[ -n "$m" ]] || continue
      umount "$m" 2>/dev/null || true
      rm -f "$m"
    done <"$STATE/netns.list"
    rm -f "$STATE/netns.list"
  fi
}

# The network namespaces containerd made for this node's sandboxes (/run/netns/cni-*).
record_netns() {
  running_pid containerd >/dev/null || return 0
  ctr_ containers ls -q 2>/dev/null | while read -r id; do
    ctr_ containers info "$id" 2>/dev/null \
      | python3 -c 'import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and "/netns/cni-" in ns.get("path", ""):
        print(ns["path"])' 2>/dev/null || true
  done | sort -u >>"$STATE/netns.list"
}

# The cgroups the kubelet created (kubepods) in every v1 hierarchy, leaves first.
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
# commands

all_up() {
  local name
  for name in containerd kubelet kube-controller-manager kube-scheduler; do
    running_pid "$name" >/dev/null || return 1
  done
  cp_ status >/dev/null 2>&1
}

cmd_up() {
  mkdir -p "$STATE" "$LOGS"
  if all_up; then
    log "already up"
    printf '%s\n' "$CP_STATE/kubeconfig"
    return 0
  fi
  ensure_packages
  "$repo/tests/controlplane/build.sh" all node
  cmd_down_quiet
  trap 'rc=$?; if ((rc != 0)); then log "up failed: tearing down (logs stay in $LOGS)"; cmd_down_quiet; fi' EXIT
  cp_ up >/dev/null
  gen_node_pki
  net_up
  write_cni_config
  start_containerd
  load_pause_image
  start_controller_manager
  start_scheduler
  start_kubelet
  wait_node_ready
  trap - EXIT
  log "up: node $NODE_NAME, Pods on $BRIDGE $POD_CIDR, state in $STATE"
  printf '%s\n' "$CP_STATE/kubeconfig"
}

cmd_down_quiet() {
  # No new Pods while the kubelet removes the running ones.
  stop_process kube-scheduler
  stop_process kube-controller-manager
  drain_pods
  stop_process kubelet
  record_netns
  kill_containers
  stop_process containerd
  local pid
  for pid in $(our_shims); do stop_pid containerd-shim "$pid" 5; done
  unmount_all
  remove_cgroups
  # The shims' socket directory is fixed; removed only when empty (no other containerd uses it).
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  net_down
  cp_ down >/dev/null 2>&1 || true
  rm -rf "$STATE/containerd" "$STATE/kubelet" "$STATE/cni" "$PKI" "$STATE/images"
  if [[ -d "$RUN" ]]; then rm -rf --one-file-system "$RUN"; fi
}

cmd_down() {
  cmd_down_quiet
  log "down; logs kept in $LOGS"
}

cmd_import() {
  running_pid containerd >/dev/null || die "not up: run '$0 up' first"
  import_images "$@"
}

cmd_status() {
  local rc=0 name pid
  for name in containerd kubelet kube-controller-manager kube-scheduler; do
    if pid="$(running_pid "$name")"; then log "$name: running (pid $pid)"; else log "$name: not running"; rc=1; fi
  done
  cp_ status || rc=1
  if [[ "$(kubectl_ get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; then
    log "node $NODE_NAME: Ready"
  else
    log "node $NODE_NAME: not Ready"; rc=1
  fi
  return "$rc"
}

cmd_env() {
  cp_ env
  local k v
  while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done <<EOF
FLUXGATE_NODE_DIR=$STATE
FLUXGATE_NODE_NAME=$NODE_NAME
FLUXGATE_NODE_GATEWAY=$GATEWAY
FLUXGATE_NODE_POD_CIDR=$POD_CIDR
FLUXGATE_NODE_CTR=$CTR_BIN --address $SOCK -n k8s.io
FLUXGATE_NODE_SCRIPT=$here/node.sh
EOF
}

case "${1:-}" in
  up) (($# == 1)) || usage; cmd_up ;;
  down) (($# == 1)) || usage; cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  import) shift; (($#)) || usage; cmd_import "$@" ;;
  *) usage ;;
esac
