#!/usr/bin/env bash
# A real Kubernetes control plane for the end-to-end tests: etcd + kube-apiserver on loopback,
# no nodes, no controller-manager, Flux's source-controller CRDs installed.
#
#   tests/e2e/controlplane.sh up                  build if needed, start, print the kubeconfig
#                                                 path as the last line of stdout
#   tests/e2e/controlplane.sh env                 `export` lines for the running control plane
#   tests/e2e/controlplane.sh status              exit 0 when both processes are up and ready
#   tests/e2e/controlplane.sh restart-apiserver   same ports, same data; waits for /readyz
#   tests/e2e/controlplane.sh restart-etcd        same ports, same data; waits for /readyz
#   tests/e2e/controlplane.sh stop-apiserver      an outage: etcd keeps running
#   tests/e2e/controlplane.sh start-apiserver     ends it: same ports, same data; waits for /readyz
#   tests/e2e/controlplane.sh down                stop both; keeps logs; KEEP=1 keeps data too
#
# State (pids, logs, certs, etcd data, kubeconfig): ${FLUXGATE_E2E_DIR:-<repo>/target/e2e}.
# Logs: logs/etcd.log, logs/apiserver.log, logs/audit.log (JSON lines, every request at
# Metadata level); those of the previous fresh start are kept as *.log.1.
# Binaries: see tests/controlplane/paths.sh (cache in ${FLUXGATE_TOOLS_DIR:-~/.cache/fluxgate-e2e}).
# Everything listens on 127.0.0.1 only; etcd speaks plain HTTP on loopback.
# FLUXGATE_E2E_NODE=1 (set by tests/e2e/node.sh, which gives it a state dir of its own) starts
# kube-apiserver for a cluster with a node: ServiceAccount admission on (Pods get their token
# volume; the node's controller-manager creates the ServiceAccounts and tokens), webhook and
# aggregator calls routed to Service endpoints (Pod IPs) since there is no kube-proxy, and a client
# certificate for the kubelets.
# Without a controller-manager, namespaces stay Terminating after delete and nothing is
# garbage-collected: tests use unique names instead of relying on cleanup.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/controlplane/paths.sh
source "$repo/tests/controlplane/paths.sh"

STATE="${FLUXGATE_E2E_DIR:-$repo/target/e2e}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
ETCD_DATA="$STATE/etcd-data"
PORTS_FILE="$STATE/ports.env"
KUBECONFIG_FILE="$STATE/kubeconfig"
KEPT_MARKER="$STATE/data-kept"
READY_TIMEOUT="${FLUXGATE_E2E_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${FLUXGATE_E2E_STOP_TIMEOUT:-20}"
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1

log() { printf '[controlplane] %s\n' "$*" >&2; }
die() { printf '[controlplane] error: %s\n' "$*" >&2; exit 1; }

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# ports

# A port that nothing listens on right now, on 127.0.0.1.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" || { echo "$port"; return; }
  done
  die "no free port found on 127.0.0.1"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

load_ports() {
  [[ -f "$PORTS_FILE" ]] || return 1
  # shellcheck source=/dev/null
  source "$PORTS_FILE"
  [[ -n "${ETCD_CLIENT_PORT:-}" && -n "${ETCD_PEER_PORT:-}" && -n "${APISERVER_PORT:-}" ]]
}

choose_ports() {
  local a b c
  a="$(free_port)"
  b="$(free_port)"
  while [[ "$b" == "$a" ]]; do b="$(free_port)"; done
  c="$(free_port)"
  while [[ "$c" == "$a" || "$c" == "$b" ]]; do c="$(free_port)"; done
  printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' "$a" "$b" "$c" >"$PORTS_FILE"
  load_ports
}

etcd_url() { printf 'http://127.0.0.1:%s' "$ETCD_CLIENT_PORT"; }
apiserver_url() { printf 'https://127.0.0.1:%s' "$APISERVER_PORT"; }

# ---------------------------------------------------------------------------------------------
# certificates

gen_pki() {
  if [[ -f "$PKI/admin.crt" && -f "$PKI/sa.pub" ]]; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl not found"
  log "generating certificates in $PKI"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  (
    cd "$PKI"
    # Serving CA (trusted by clients) and client CA (trusted by the apiserver) are kept apart,
    # as in a real cluster, so a serving cert can never authenticate a user.
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=fluxgate-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt
    openssl genrsa -out client-ca.key 2048 2>/dev/null
    openssl req -x509 -new -key client-ca.key -sha256 -days 3650 -subj "/CN=fluxgate-e2e-client-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out client-ca.crt

    openssl genrsa -out apiserver.key 2048 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile apiserver.ext -out apiserver.crt 2>/dev/null

    openssl genrsa -out admin.key 2048 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=fluxgate-e2e-admin" -out admin.csr
    cat >admin.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl x509 -req -in admin.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial \
      -days 3650 -sha256 -extfile admin.ext -out admin.crt 2>/dev/null

    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  ) || die "certificate generation failed"
}

write_kubeconfig() {
  local tmp="$KUBECONFIG_FILE.tmp"
  # Credentials are embedded so the file works wherever it is copied.
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fluxgate-e2e
  cluster:
    server: $(apiserver_url)
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: fluxgate-e2e-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI/admin.crt")
    client-key-data: $(base64 -w0 "$PKI/admin.key")
contexts:
- name: fluxgate-e2e
  context:
    cluster: fluxgate-e2e
    user: fluxgate-e2e-admin
    namespace: default
current-context: fluxgate-e2e
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$KUBECONFIG_FILE"
}

# ---------------------------------------------------------------------------------------------
# processes

pid_file() { printf '%s/%s.pid' "$STATE" "$1"; }

# Pid of our running process $1 (etcd|apiserver), verified against its binary so that a
# recycled pid is never signalled.
running_pid() {
  local name="$1" file pid bin exe
  file="$(pid_file "$name")"
  [[ -f "$file" ]] || return 1
  pid="$(<"$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  case "$name" in
    etcd) bin="$ETCD_BIN" ;;
    apiserver) bin="$KUBE_APISERVER_BIN" ;;
  esac
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "$exe" == "$bin" || "$exe" == "$bin (deleted)" ]] || return 1
  printf '%s' "$pid"
}

# Starts $2... detached from this shell (so it outlives `up`), logging to $LOGS/$1.log.
spawn() {
  local name="$1" pid
  shift
  mkdir -p "$LOGS"
  printf '\n===== %s start %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$LOGS/$name.log"
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$name")"
  sleep 0.2
  kill -0 "$pid" 2>/dev/null || { tail_log "$name"; die "$name exited at once (log: $LOGS/$name.log)"; }
}

stop_process() {
  local name="$1" pid i
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$(pid_file "$name")"
}

tail_log() {
  local name="$1" n="${2:-40}"
  [[ -f "$LOGS/$name.log" ]] || return 0
  printf '\n----- last %s lines of %s -----\n' "$n" "$LOGS/$name.log" >&2
  tail -n "$n" "$LOGS/$name.log" >&2
}

start_etcd() {
  mkdir -p "$ETCD_DATA"
  chmod 700 "$ETCD_DATA"
  local peer="http://127.0.0.1:$ETCD_PEER_PORT" var
  # etcd takes any ETCD_* environment variable as a flag: none from the caller may leak in.
  local -a clean_env=(env)
  while read -r var; do clean_env+=(-u "$var"); done < <(compgen -e | grep '^ETCD_' || true)
  # --unsafe-no-fsync: test data only, and fsync dominates write latency on shared disks.
  spawn etcd "${clean_env[@]}" "$ETCD_BIN" \
    --name=fluxgate-e2e \
    --data-dir="$ETCD_DATA" \
    --listen-client-urls="$(etcd_url)" \
    --advertise-client-urls="$(etcd_url)" \
    --listen-peer-urls="$peer" \
    --initial-advertise-peer-urls="$peer" \
    --initial-cluster="fluxgate-e2e=$peer" \
    --initial-cluster-state=new \
    --unsafe-no-fsync \
    --log-level=warn
  wait_etcd
}

wait_etcd() {
  local deadline=$((SECONDS + READY_TIMEOUT)) out
  while ((SECONDS < deadline)); do
    running_pid etcd >/dev/null || { tail_log etcd; die "etcd exited (log: $LOGS/etcd.log)"; }
    out="$(curl -fsS --max-time 2 "$(etcd_url)/health" 2>/dev/null || true)"
    if [[ "$out" == *'"health":"true"'* ]]; then
      log "etcd ready at $(etcd_url)"
      return 0
    fi
    sleep 0.5
  done
  tail_log etcd
  die "etcd not healthy after ${READY_TIMEOUT}s (log: $LOGS/etcd.log)"
}

# Every request at Metadata level (who, verb, object, response code), written before the
# response (blocking mode): tests read it to check which requests a ServiceAccount really made.
write_audit_policy() {
  cat >"$STATE/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: Metadata
EOF
}

start_apiserver() {
  local url
  url="$(apiserver_url)"
  write_audit_policy
  local -a mode_flags=(--disable-admission-plugins=ServiceAccount)
  if [[ "${FLUXGATE_E2E_NODE:-0}" == 1 ]]; then
    mode_flags=(
      --enable-admission-plugins=NodeRestriction
      --enable-aggregator-routing=true
      --kubelet-client-certificate="$PKI/admin.crt"
      --kubelet-client-key="$PKI/admin.key"
      --kubelet-certificate-authority="$PKI/ca.crt"
      --kubelet-preferred-address-types=InternalIP
    )
  fi
  # ServiceAccount admission is off without a node: with no controller-manager no namespace ever
  # gets its `default` ServiceAccount, and Pods would be rejected for lack of it.
  # No endpoint reconciler: it refuses a loopback advertise address (Endpoints may not point at
  # 127.0.0.0/8), and nothing in-cluster dials default/kubernetes here anyway.
  spawn apiserver "$KUBE_APISERVER_BIN" \
    --etcd-servers="$(etcd_url)" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --cert-dir="$STATE/apiserver-certs" \
    --client-ca-file="$PKI/client-ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer="$url" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --api-audiences="$url" \
    --allow-privileged=true \
    "${mode_flags[@]}" \
    --audit-policy-file="$STATE/audit-policy.yaml" \
    --audit-log-path="$LOGS/audit.log" \
    --audit-log-format=json \
    --audit-log-mode=blocking \
    --audit-log-maxsize=500 \
    --profiling=false
  wait_apiserver
}

# curl against the apiserver as the admin user.
api_curl() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$(apiserver_url)$1"
}

wait_apiserver() {
  local deadline=$((SECONDS + READY_TIMEOUT)) out
  while ((SECONDS < deadline)); do
    running_pid apiserver >/dev/null || { tail_log apiserver; die "kube-apiserver exited (log: $LOGS/apiserver.log)"; }
    out="$(api_curl /readyz 2>/dev/null || true)"
    if [[ "$out" == ok ]]; then
      log "kube-apiserver ready at $(apiserver_url)"
      return 0
    fi
    sleep 0.5
  done
  api_curl '/readyz?verbose' >&2 || true
  tail_log apiserver
  die "kube-apiserver not ready after ${READY_TIMEOUT}s (log: $LOGS/apiserver.log)"
}

kubectl_() {
  "$KUBECTL_BIN" --kubeconfig="$KUBECONFIG_FILE" --request-timeout=30s "$@"
}

# The apiserver creates default/kubernetes itself (a post-start controller); it can lag /readyz
# by a moment, and a webhook or proxy test relying on its ClusterIP must not race it.
ensure_kubernetes_service() {
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    if kubectl_ get service kubernetes -n default -o name >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  log "default/kubernetes Service missing after 30s: creating it"
  kubectl_ apply -f - >&2 <<EOF
apiVersion: v1
kind: Service
metadata:
  name: kubernetes
  namespace: default
  labels:
    component: apiserver
    provider: kubernetes
spec:
  type: ClusterIP
  clusterIP: $SERVICE_IP
  ports:
  - name: https
    port: 443
    protocol: TCP
    targetPort: $APISERVER_PORT
EOF
}

install_crds() {
  compgen -G "$CRD_DIR/*.yaml" >/dev/null || die "no CRDs in $CRD_DIR (run tests/controlplane/build.sh crds)"
  log "installing Flux source-controller $FLUXGATE_SOURCE_CONTROLLER_VERSION CRDs"
  # Server-side apply: these CRDs are larger than the last-applied annotation allows.
  kubectl_ apply --server-side --force-conflicts --field-manager=fluxgate-e2e -f "$CRD_DIR" >&2
  kubectl_ wait --for=condition=Established --timeout=60s -f "$CRD_DIR" >&2 \
    || die "Flux CRDs not Established within 60s"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
  mkdir -p "$STATE" "$LOGS"
  if running_pid etcd >/dev/null && running_pid apiserver >/dev/null && load_ports \
    && [[ "$(api_curl /readyz 2>/dev/null || true)" == ok ]]; then
    log "already up ($(apiserver_url))"
    write_kubeconfig
    printf '%s\n' "$KUBECONFIG_FILE"
    return 0
  fi
  # Leftovers of an earlier run that died half-way.
  stop_process apiserver
  stop_process etcd

  "$repo/tests/controlplane/build.sh" all
  # A half-started control plane is stopped again (logs stay) so that no stray process keeps
  # its ports.
  trap 'rc=$?; if ((rc != 0)); then stop_process apiserver; stop_process etcd; fi' EXIT
  for bin in "$ETCD_BIN" "$KUBE_APISERVER_BIN" "$KUBECTL_BIN"; do
    [[ -x "$bin" ]] || die "missing binary $bin after build"
  done
  command -v curl >/dev/null || die "curl not found"

  # Data is reused only when `KEEP=1 down` kept it on purpose; anything else left behind (a run
  # that died) would leak objects from one suite into the next.
  if [[ ! -f "$KEPT_MARKER" ]]; then
    rm -rf "$ETCD_DATA" "$PKI" "$STATE/apiserver-certs" "$PORTS_FILE" "$KUBECONFIG_FILE"
    # A fresh control plane starts fresh logs; the previous run's stay beside them as *.log.1.
    local name
    for name in etcd apiserver audit; do
      [[ -f "$LOGS/$name.log" ]] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
    done
  fi
  gen_pki
  # Reuse the ports of data kept by `KEEP=1 down` when they are still free.
  if ! load_ports || port_in_use "$ETCD_CLIENT_PORT" || port_in_use "$ETCD_PEER_PORT" \
    || port_in_use "$APISERVER_PORT"; then
    choose_ports
  fi
  [[ -d "$ETCD_DATA/member" ]] && log "reusing etcd data in $ETCD_DATA"
  write_kubeconfig
  start_etcd
  start_apiserver
  ensure_kubernetes_service
  install_crds
  trap - EXIT
  rm -f "$KEPT_MARKER"
  log "up: $(apiserver_url), etcd $(etcd_url), state in $STATE"
  printf '%s\n' "$KUBECONFIG_FILE"
}

cmd_down() {
  stop_process apiserver
  stop_process etcd
  if [[ "${KEEP:-0}" == 1 ]]; then
    [[ -d "$ETCD_DATA" ]] && touch "$KEPT_MARKER"
    log "down; data kept in $STATE (KEEP=1)"
  else
    rm -rf "$ETCD_DATA" "$PKI" "$STATE/apiserver-certs" "$PORTS_FILE" "$KUBECONFIG_FILE" "$KEPT_MARKER"
    log "down; logs kept in $LOGS"
  fi
}

cmd_status() {
  local rc=0 pid
  if ! load_ports; then
    log "not up (no $PORTS_FILE)"
    return 3
  fi
  if pid="$(running_pid etcd)"; then
    if curl -fsS --max-time 2 "$(etcd_url)/health" 2>/dev/null | grep -q '"health":"true"'; then
      log "etcd: running (pid $pid), healthy at $(etcd_url)"
    else
      log "etcd: running (pid $pid), NOT healthy at $(etcd_url)"; rc=1
    fi
  else
    log "etcd: not running"; rc=1
  fi
  if pid="$(running_pid apiserver)"; then
    if [[ "$(api_curl /readyz 2>/dev/null || true)" == ok ]]; then
      log "kube-apiserver: running (pid $pid), ready at $(apiserver_url)"
    else
      log "kube-apiserver: running (pid $pid), NOT ready at $(apiserver_url)"; rc=1
    fi
  else
    log "kube-apiserver: not running"; rc=1
  fi
  log "kubeconfig: $KUBECONFIG_FILE"
  return "$rc"
}

cmd_env() {
  load_ports || die "not up: run '$0 up' first"
  [[ -f "$KUBECONFIG_FILE" ]] || die "not up: no $KUBECONFIG_FILE"
  local k v
  while IFS='=' read -r k v; do
    printf 'export %s=%q\n' "$k" "$v"
  done <<EOF
KUBECONFIG=$KUBECONFIG_FILE
FLUXGATE_E2E_KUBECONFIG=$KUBECONFIG_FILE
FLUXGATE_E2E_KUBECTL=$KUBECTL_BIN
FLUXGATE_E2E_KUBE_APISERVER=$KUBE_APISERVER_BIN
FLUXGATE_E2E_ETCD=$ETCD_BIN
FLUXGATE_E2E_DIR=$STATE
FLUXGATE_E2E_CONTROLPLANE=$here/controlplane.sh
APISERVER_URL=$(apiserver_url)
FLUXGATE_E2E_APISERVER_URL=$(apiserver_url)
FLUXGATE_E2E_CA_FILE=$PKI/ca.crt
FLUXGATE_E2E_ETCD_URL=$(etcd_url)
FLUXGATE_E2E_CRD_DIR=$CRD_DIR
EOF
}

cmd_restart_apiserver() {
  load_ports || die "not up: run '$0 up' first"
  stop_process apiserver
  start_apiserver
}

cmd_stop_apiserver() {
  load_ports || die "not up: run '$0 up' first"
  stop_process apiserver
}

cmd_start_apiserver() {
  load_ports || die "not up: run '$0 up' first"
  running_pid apiserver >/dev/null && die "apiserver is already running"
  start_apiserver
}

cmd_restart_etcd() {
  load_ports || die "not up: run '$0 up' first"
  stop_process etcd
  start_etcd
  # The apiserver keeps running and reconnects; wait until it serves again.
  if running_pid apiserver >/dev/null; then
    wait_apiserver
  fi
}

(($# == 1)) || usage
case "$1" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  restart-apiserver) cmd_restart_apiserver ;;
  restart-etcd) cmd_restart_etcd ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
