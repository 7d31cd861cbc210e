#!/usr/bin/env bash
# A real, local Kubernetes cluster run as plain processes of this machine, for the tests and
# the demo: etcd + kube-apiserver + kube-controller-manager, and (unless
# PULLSECRET_INJECTOR_NODE=0) one node: kube-scheduler, kubelet, kube-proxy, containerd and runc,
# on a bridge of its own (node.sh says how, and which network rules hold). No Docker, no kind.
#
# Usage: tests/controlplane/cluster.sh up|down|status|restart-apiserver|restart-etcd
#        tests/controlplane/cluster.sh stop-component|start-component NAME
#        tests/controlplane/cluster.sh trust-registry HOST:PORT CA-FILE
#
#   up      Builds (or reuses) the binaries via build.sh, stops a previous cluster of the same
#           cluster dir if there is one, then starts a fresh cluster in a new temporary state
#           directory: free loopback ports, a fresh CA, apiserver serving cert, service-account
#           key and admin token. Waits until etcd is healthy, the apiserver is ready and the
#           `default` ServiceAccount exists, then (with a node) until the node is Ready and
#           kube-proxy has programmed the Services. On failure it prints the failing
#           component's log tail, stops everything it started, and exits non-zero.
#           Writes into the cluster dir (default <repo>/.local):
#             kubeconfig     admin kubeconfig (CA embedded, token auth, group system:masters)
#             cluster.env    shell-sourceable: KUBECONFIG, CLUSTER_STATE_DIR, CLUSTER_BIN_DIR,
#                            APISERVER_URL, APISERVER_PORT, CLUSTER_CA_FILE, CLUSTER_CA_KEY_FILE,
#                            ADMIN_TOKEN, ETCD_URL, ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_PID,
#                            APISERVER_PID, CONTROLLER_MANAGER_PID, K8S_VERSION; with a node
#                            also NODE_NAME, NODE_IP, NODE_BIN_DIR, CONTAINERD_SOCK,
#                            CONTAINERD_CERTS_DIR
#             bin/           symlinks: kubectl helm etcd and the Kubernetes binaries; with a
#                            node also containerd ctr crictl runc registry crane
#             cluster.state-dir   path of the running cluster's state directory
#           The state directory holds the certificates, keys, etcd data, one <component>.pid
#           and one <component>.log per process, and the apiserver's audit log of Pods
#           (audit.log, Metadata level: the admission webhooks' audit annotations).
#   down    Removes the node's pods through the CRI, stops every recorded process by pid
#           (SIGTERM, up to 10 s, then SIGKILL), checks they are gone, unmounts what the node
#           mounted, deletes the bridge and the nftables tables, removes the state directory,
#           kubeconfig, cluster.env and cluster.state-dir. Idempotent.
#   status  Reports whether the cluster is up (all recorded pids alive and /readyz ok).
#           Exit status 0 when up, 1 otherwise.
#   restart-apiserver, restart-etcd
#           Fault injection for tests: stops the component by its recorded pid and starts it
#           again with the exact command line `up` recorded (NAME.cmdline in the state dir:
#           same ports, certificates and data directory), then waits until it is healthy
#           and the apiserver is ready again. The log is appended to; cluster.env gets the
#           new pid.
#   stop-component NAME, start-component NAME
#           The two halves of a restart (NAME: etcd, kube-apiserver, kube-controller-manager),
#           so a test can look at the world while the component is down.
#   trust-registry HOST:PORT CA-FILE
#           The node's containerd pulls from https://HOST:PORT trusting CA-FILE.
#
# Environment:
#   PULLSECRET_INJECTOR_CLUSTER_DIR      where kubeconfig/cluster.env/bin go (default
#                                        <repo>/.local). Use a separate one for e2e runs so
#                                        they do not clash with a developer's cluster.
#   PULLSECRET_INJECTOR_CLUSTER_TIMEOUT  seconds to wait for each component (default 120).
#   PULLSECRET_INJECTOR_CLUSTER_KEEP_FAILED=1
#                                        keep the state directory (logs) of a failed `up`.
#   PULLSECRET_INJECTOR_APISERVER_ARGS   extra kube-apiserver flags (split on whitespace).
#   PULLSECRET_INJECTOR_NODE=0           the control plane only, no node.
#   TMPDIR                               parent of the temporary state directory.
#   K8S_VERSION, ETCD_VERSION, HELM_VERSION, PULLSECRET_INJECTOR_CACHE
#                                        passed through to build.sh and build-tool.sh
#                                        (versions, binary cache).
#
# Requires: bash, openssl, curl, and python3 (to pick free ports; a bash fallback exists).
# Processes are only ever stopped by their recorded pid, after checking that the pid still
# belongs to this cluster (its command line names the state directory).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=node.sh
. "$SCRIPT_DIR/node.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CLUSTER_DIR=${PULLSECRET_INJECTOR_CLUSTER_DIR:-$REPO_ROOT/.local}
TIMEOUT=${PULLSECRET_INJECTOR_CLUSTER_TIMEOUT:-120}
# shellcheck source=../kubernetes.sh
. "$SCRIPT_DIR/../kubernetes.sh"

KUBECONFIG_OUT="$CLUSTER_DIR/kubeconfig"
ENV_OUT="$CLUSTER_DIR/cluster.env"
POINTER="$CLUSTER_DIR/cluster.state-dir"
MARKER=".pullsecret-injector-cluster"
# Stop order: clients first, storage last (the node's components stop before these).
COMPONENTS=(kube-controller-manager kube-apiserver etcd)
APISERVER_HOST=127.0.0.1

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process helpers (by pid only)

# Prints the process state letter (R, S, Z, ...) or nothing if there is no such process.
proc_state() {
  local pid=$1
  if [ -r "/proc/$pid/stat" ]; then
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    printf '%s' "${stat%% *}"
  else
    ps -o stat= -p "$pid" 2>/dev/null | cut -c1 || true
  fi
}

# A zombie has exited; its parent (we, or init) just has not reaped it yet.
pid_alive() {
  local state
  state=$(proc_state "$1")
  [ -n "$state" ] && [ "$state" != Z ]
}

proc_cmdline() {
  local pid=$1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true
  else
    ps -o args= -p "$pid" 2>/dev/null || true
  fi
}

# True if pid is alive and its command line mentions the state dir (guards against pid reuse).
pid_is_ours() {
  local pid=$1 state_dir=$2
  pid_alive "$pid" || return 1
  case "$(proc_cmdline "$pid")" in
    *"$state_dir"*) return 0 ;;
    *) return 1 ;;
  esac
}

# Stops one process: SIGTERM, wait up to 10 s, SIGKILL, wait up to 5 s. Fails if it survives.
stop_pid() {
  local name=$1 pid=$2 state_dir=$3 deadline
  if ! pid_is_ours "$pid" "$state_dir"; then
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if pid_alive "$pid"; then
    log "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  fi
  # Reap it if it is our own child (a failed `up`); harmless otherwise.
  wait "$pid" 2>/dev/null || true
  if pid_alive "$pid"; then
    log "error: $name (pid $pid) is still running"
    return 1
  fi
}

# Stops every process recorded in a state dir and removes the dir. Returns non-zero if a
# process could not be stopped (the dir is then kept).
stop_state_dir() {
  local state_dir=$1 name pid rc=0
  [ -d "$state_dir" ] || return 0
  if [ ! -e "$state_dir/$MARKER" ]; then
    log "warning: $state_dir is not a cluster state dir (no $MARKER); leaving it alone"
    return 0
  fi
  node_down "$state_dir" || rc=1
  for name in "${COMPONENTS[@]}"; do
    [ -f "$state_dir/$name.pid" ] || continue
    pid=$(cat "$state_dir/$name.pid")
    [ -n "$pid" ] || continue
    stop_pid "$name" "$pid" "$state_dir" || rc=1
  done
  if [ "$rc" -ne 0 ]; then
    log "error: some processes survived; keeping $state_dir"
    return 1
  fi
  rm -rf "$state_dir"
}

# The state dir of the cluster recorded in CLUSTER_DIR, or nothing.
recorded_state_dir() {
  if [ -f "$POINTER" ]; then
    cat "$POINTER"
  elif [ -f "$ENV_OUT" ]; then
    # shellcheck disable=SC1090
    (. "$ENV_OUT" && printf '%s' "${CLUSTER_STATE_DIR:-}")
  fi
}

# ---------------------------------------------------------------------------------------------
# down / status

do_down() {
  local state_dir
  state_dir=$(recorded_state_dir)
  if [ -n "$state_dir" ]; then
    stop_state_dir "$state_dir" || return 1
    log "cluster stopped ($state_dir removed)"
  fi
  rm -f "$KUBECONFIG_OUT" "$ENV_OUT" "$POINTER"
}

do_status() {
  local state_dir name pid ok=0
  state_dir=$(recorded_state_dir)
  if [ -z "$state_dir" ] || [ ! -d "$state_dir" ]; then
    echo "no cluster (nothing recorded in $CLUSTER_DIR)"
    return 1
  fi
  local names=(etcd kube-apiserver kube-controller-manager)
  [ -f "$state_dir/node.env" ] && names+=(containerd kube-scheduler kubelet kube-proxy)
  for name in "${names[@]}"; do
    pid=$(cat "$state_dir/$name.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && pid_is_ours "$pid" "$state_dir"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: NOT running${pid:+ (recorded pid $pid)}"
      ok=1
    fi
  done
  if [ -f "$ENV_OUT" ]; then
    local url
    # shellcheck disable=SC1090
    url=$(. "$ENV_OUT" && printf '%s' "$APISERVER_URL")
    if [ "$(api_get "$state_dir" "$url/readyz" 2>/dev/null)" = ok ]; then
      echo "apiserver $url: /readyz ok"
    else
      echo "apiserver $url: /readyz NOT ok"
      ok=1
    fi
  else
    echo "cluster.env missing (an \`up\` did not finish)"
    ok=1
  fi
  if [ "$ok" -eq 0 ]; then
    echo "cluster is up; KUBECONFIG=$KUBECONFIG_OUT"
  else
    echo "cluster is NOT healthy; run: $0 down && $0 up"
  fi
  return "$ok"
}

# GET with the admin token (read from a header file, so it is not on a command line).
api_get() {
  local state_dir=$1 url=$2
  curl -sS --max-time 3 --cacert "$state_dir/ca.crt" -H "@$state_dir/auth-header" "$url"
}

api_status_code() {
  local state_dir=$1 url=$2
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$state_dir/ca.crt" \
    -H "@$state_dir/auth-header" "$url" || true
}

# ---------------------------------------------------------------------------------------------
# up

# Prints N distinct free loopback TCP ports.
free_ports() {
  local n=$1
  if command -v python3 >/dev/null; then
    python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
  else
    local ports=() p
    while [ "${#ports[@]}" -lt "$n" ]; do
      p=$((20000 + RANDOM % 40000))
      case " ${ports[*]} " in *" $p "*) continue ;; esac
      # Something accepting connections there means it is taken.
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
      ports+=("$p")
    done
    echo "${ports[*]}"
  fi
}

check_port() {
  case "$1" in
    '' | *[!0-9]*) die "could not pick a free port (got '$1')" ;;
  esac
}

STATE=""
CURRENT=""          # component being started (for the failure report)
UP_DONE=0

on_up_exit() {
  local rc=$?
  [ "$UP_DONE" -eq 1 ] && return 0
  [ "$rc" -eq 0 ] && rc=1
  trap - EXIT INT TERM
  if [ -n "$CURRENT" ] && [ -n "$STATE" ] && [ -f "$STATE/$CURRENT.log" ]; then
    log "---- last lines of $STATE/$CURRENT.log ----"
    tail -n 40 "$STATE/$CURRENT.log" >&2 || true
    log "---- end of $CURRENT.log ----"
  fi
  log "cluster up FAILED${CURRENT:+ while starting $CURRENT}; stopping what was started"
  if [ -n "$STATE" ]; then
    if [ "${PULLSECRET_INJECTOR_CLUSTER_KEEP_FAILED:-0}" = 1 ]; then
      local name pid
      node_down "$STATE" || true
      for name in "${COMPONENTS[@]}"; do
        pid=$(cat "$STATE/$name.pid" 2>/dev/null || true)
        [ -n "$pid" ] && stop_pid "$name" "$pid" "$STATE"
      done
      log "state dir kept for inspection: $STATE"
    else
      stop_state_dir "$STATE" || true
    fi
  fi
  rm -f "$KUBECONFIG_OUT" "$ENV_OUT" "$POINTER"
  exit "$rc"
}

# start NAME BINARY ARGS...: runs a daemon in its own session, output to NAME.log, pid to
# NAME.pid. Fds 8 (our lock) and 9 are closed so the daemon does not hold them.
start() {
  local name=$1; shift
  local bin=$1; shift
  CURRENT=$name
  if [ "${APPEND_LOG:-0}" = 1 ]; then
    printf '\n---- restarted by cluster.sh at %s ----\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      >>"$STATE/$name.log"
  else
    : >"$STATE/$name.log"
  fi
  # The exact command line, for restart-apiserver/restart-etcd.
  printf '%q ' "$bin" "$@" >"$STATE/$name.cmdline"
  # The subshell execs setsid, which execs the binary (it is no group leader), so $! is the
  # daemon's pid. It runs in the state dir so it holds no reference to the caller's cwd.
  (cd "$STATE" && exec setsid "$bin" "$@") </dev/null >>"$STATE/$name.log" 2>&1 8>&- 9>&- &
  local pid=$!
  echo "$pid" >"$STATE/$name.pid"
  log "started $name (pid $pid, log $STATE/$name.log)"
}

# wait_for NAME DESCRIPTION CHECK-COMMAND...: polls the check until it succeeds, the process
# dies or the deadline passes.
wait_for() {
  local name=$1 what=$2; shift 2
  local pid deadline rc start_s=$SECONDS
  pid=$(cat "$STATE/$name.pid")
  deadline=$((SECONDS + TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if ! pid_alive "$pid"; then
      wait "$pid" 2>/dev/null && rc=0 || rc=$?
      log "error: $name (pid $pid) exited with status $rc before $what"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "error: timed out after ${TIMEOUT}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
  log "$what ($((SECONDS - start_s))s)"
}

# Whether the component's log says its port was taken between picking and binding.
port_clash() {
  grep -qi 'address already in use' "$STATE/$1.log" 2>/dev/null
}

etcd_healthy() {
  curl -sS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}

apiserver_ready() {
  [ "$(api_get "$STATE" "https://$APISERVER_HOST:$APISERVER_PORT/readyz")" = ok ]
}

default_sa_exists() {
  [ "$(api_status_code "$STATE" \
    "https://$APISERVER_HOST:$APISERVER_PORT/api/v1/namespaces/default/serviceaccounts/default")" = 200 ]
}

# issue_cert DIR NAME SUBJECT EXTENDED-KEY-USAGE [SANS]: an ECDSA key and a certificate signed
# by the cluster CA (DIR/NAME.key, DIR/NAME.crt).
issue_cert() {
  local d=$1 name=$2 subject=$3 usage=$4 sans=${5:-}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/$name.key" -out "$d/$name.csr" -subj "$subject"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$d/$name.ext" -out "$d/$name.crt"
}

gen_pki() {
  local d=$STATE
  log "generating CA, apiserver serving cert, service-account key and admin token"
  # openssl's chatter goes to pki.log, which the failure report prints if a step fails.
  CURRENT=pki
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/ca.key" -out "$d/ca.crt" -days 3650 -subj "/CN=pullsecret-injector-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/apiserver.key" -out "$d/apiserver.csr" -subj "/CN=kube-apiserver"
    cat >"$d/apiserver.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local${NODE_IP_SAN:-}
EOF
    openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$d/apiserver.ext" \
      -out "$d/apiserver.crt"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/sa.key"
    openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
  } >"$d/pki.log" 2>&1
  CURRENT=""
  chmod 600 "$d"/*.key

  ADMIN_TOKEN=$(openssl rand -hex 32)
  printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$d/tokens.csv"
  printf 'Authorization: Bearer %s\n' "$ADMIN_TOKEN" >"$d/auth-header"
  chmod 600 "$d/tokens.csv" "$d/auth-header"

  # The apiserver's audit log, for Pods only (Metadata level: who, what, and the admission
  # webhooks' audit annotations; never a request body).
  cat >"$d/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources: [{group: "", resources: ["pods"]}]
  - level: None
POLICY
}

write_kubeconfig() {
  local out=$1 ca_data
  ca_data=$(openssl base64 -A <"$STATE/ca.crt")
  (
    umask 077
    cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pullsecret-injector-local
  cluster:
    server: https://$APISERVER_HOST:$APISERVER_PORT
    certificate-authority-data: $ca_data
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: pullsecret-injector-local
  context:
    cluster: pullsecret-injector-local
    user: admin
    namespace: default
current-context: pullsecret-injector-local
EOF
  )
}

start_etcd() {
  local attempt ports
  for attempt in 1 2 3; do
    ports=$(free_ports 2)
    read -r ETCD_CLIENT_PORT ETCD_PEER_PORT <<<"$ports"
    check_port "$ETCD_CLIENT_PORT" && check_port "$ETCD_PEER_PORT"
    rm -rf "$STATE/etcd"
    mkdir -m 700 "$STATE/etcd"
    start etcd "$BIN_DIR/etcd" \
      --name=local \
      --data-dir="$STATE/etcd" \
      --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
      --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
      --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster-state=new \
      --unsafe-no-fsync
    if wait_for etcd "etcd healthy on 127.0.0.1:$ETCD_CLIENT_PORT" etcd_healthy; then
      return 0
    fi
    if port_clash etcd && [ "$attempt" -lt 3 ]; then
      log "etcd's port was taken meanwhile; retrying with new ports"
      stop_pid etcd "$(cat "$STATE/etcd.pid")" "$STATE"
      continue
    fi
    return 1
  done
}

# With a node, the apiserver listens on and advertises the node's bridge address, so pods reach
# it through the `kubernetes` Service (kube-proxy), and it reaches webhook Services through their
# endpoints (--enable-aggregator-routing: no kube-proxy needed on the apiserver's side).
# Without a node, 1.37 refuses a loopback advertise address with the default (lease) endpoint
# reconciler, and there is no in-cluster network anyway (--endpoint-reconciler-type=none).
start_apiserver() {
  local attempt extra=()
  if [ -n "${PULLSECRET_INJECTOR_APISERVER_ARGS:-}" ]; then
    read -r -a extra <<<"$PULLSECRET_INJECTOR_APISERVER_ARGS"
  fi
  if node_enabled; then
    extra+=(--bind-address="$NODE_IP" --advertise-address="$NODE_IP"
      --enable-aggregator-routing=true
      --kubelet-client-certificate="$STATE/apiserver-kubelet-client.crt"
      --kubelet-client-key="$STATE/apiserver-kubelet-client.key"
      --kubelet-certificate-authority="$STATE/ca.crt"
      --kubelet-preferred-address-types=InternalIP)
  else
    extra+=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1
      --endpoint-reconciler-type=none)
  fi
  for attempt in 1 2 3; do
    APISERVER_PORT=$(free_ports 1)
    check_port "$APISERVER_PORT"
    start kube-apiserver "$BIN_DIR/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
      --secure-port="$APISERVER_PORT" \
      --cert-dir="$STATE/apiserver-certs" \
      --tls-cert-file="$STATE/apiserver.crt" \
      --tls-private-key-file="$STATE/apiserver.key" \
      --client-ca-file="$STATE/ca.crt" \
      --token-auth-file="$STATE/tokens.csv" \
      --authorization-mode=Node,RBAC \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$STATE/sa.key" \
      --service-account-signing-key-file="$STATE/sa.key" \
      --service-cluster-ip-range=10.0.0.0/24 \
      --allow-privileged=true \
      --enable-admission-plugins=PodNodeSelector \
      --audit-policy-file="$STATE/audit-policy.yaml" \
      --audit-log-path="$STATE/audit.log" \
      --audit-log-maxsize=100 --audit-log-maxbackup=1 \
      ${extra[@]+"${extra[@]}"}
    if wait_for kube-apiserver "kube-apiserver ready on https://$APISERVER_HOST:$APISERVER_PORT" \
      apiserver_ready; then
      return 0
    fi
    if port_clash kube-apiserver && [ "$attempt" -lt 3 ]; then
      log "kube-apiserver's port was taken meanwhile; retrying with a new port"
      stop_pid kube-apiserver "$(cat "$STATE/kube-apiserver.pid")" "$STATE"
      continue
    fi
    return 1
  done
}

start_controller_manager() {
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$STATE/admin.kubeconfig" \
    --controllers='*' \
    --leader-elect=false \
    --secure-port=0 \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$STATE/sa.key" \
    --root-ca-file="$STATE/ca.crt" \
    --cluster-signing-cert-file="$STATE/ca.crt" \
    --cluster-signing-key-file="$STATE/ca.key"
  wait_for kube-controller-manager "ServiceAccount default/default exists" default_sa_exists
}

write_env() {
  local tmp="$ENV_OUT.tmp" kv
  {
    echo "# Written by tests/controlplane/cluster.sh up at $(date -u +%Y-%m-%dT%H:%M:%SZ)."
    echo "# Source it: . $ENV_OUT"
    for kv in \
      "KUBECONFIG=$KUBECONFIG_OUT" \
      "CLUSTER_STATE_DIR=$STATE" \
      "CLUSTER_BIN_DIR=$BIN_DIR" \
      "K8S_VERSION=$K8S_VERSION" \
      "APISERVER_URL=https://$APISERVER_HOST:$APISERVER_PORT" \
      "APISERVER_PORT=$APISERVER_PORT" \
      "CLUSTER_CA_FILE=$STATE/ca.crt" \
      "CLUSTER_CA_KEY_FILE=$STATE/ca.key" \
      "ADMIN_TOKEN=$ADMIN_TOKEN" \
      "ETCD_URL=http://127.0.0.1:$ETCD_CLIENT_PORT" \
      "ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT" \
      "ETCD_PEER_PORT=$ETCD_PEER_PORT" \
      "ETCD_PID=$(cat "$STATE/etcd.pid")" \
      "APISERVER_PID=$(cat "$STATE/kube-apiserver.pid")" \
      "CONTROLLER_MANAGER_PID=$(cat "$STATE/kube-controller-manager.pid")"; do
      printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
    if node_enabled; then
      for kv in \
        "NODE_NAME=$NODE_NAME" \
        "NODE_IP=$NODE_IP" \
        "NODE_BIN_DIR=$NODE_BIN_DIR" \
        "CONTAINERD_SOCK=$CONTAINERD_SOCK" \
        "CONTAINERD_CERTS_DIR=$STATE/containerd/certs.d"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
      done
    fi
  } >"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_OUT"
}

do_up() {
  local t0=$SECONDS tool
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  log "building or reusing the control-plane binaries (tests/controlplane/build.sh)"
  BIN_DIR=$(bash "$SCRIPT_DIR/build.sh" 8>&-) || die "build.sh failed"
  [ -d "${BIN_DIR:-}" ] || die "build.sh did not print a bin directory"
  HELM_BIN=$(bash "$SCRIPT_DIR/build-tool.sh" helm 8>&-) || die "build-tool.sh helm failed"
  if node_enabled; then
    log "building or reusing the node's binaries (tests/controlplane/build-node.sh)"
    NODE_BIN_DIR=$(bash "$SCRIPT_DIR/build-node.sh" 8>&-) || die "build-node.sh failed"
    [ -d "${NODE_BIN_DIR:-}" ] || die "build-node.sh did not print a bin directory"
    APISERVER_HOST=$NODE_IP
  fi

  if [ -n "$(recorded_state_dir)" ] || [ -f "$KUBECONFIG_OUT" ]; then
    log "a previous cluster is recorded in $CLUSTER_DIR; stopping it first"
    do_down || die "could not stop the previous cluster"
  fi

  mkdir -p "$CLUSTER_DIR/bin"
  for tool in kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet \
    kube-proxy etcd; do
    ln -sfn "$BIN_DIR/$tool" "$CLUSTER_DIR/bin/$tool"
  done
  ln -sfn "$HELM_BIN" "$CLUSTER_DIR/bin/helm"
  if node_enabled; then
    for tool in containerd ctr crictl runc registry crane; do
      ln -sfn "$NODE_BIN_DIR/$tool" "$CLUSTER_DIR/bin/$tool"
    done
  fi

  trap on_up_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/pullsecret-injector-cluster.XXXXXX")
  touch "$STATE/$MARKER"
  # Recorded before anything starts, so `down` finds even a half-started cluster.
  printf '%s\n' "$STATE" >"$POINTER"
  log "state dir: $STATE"

  if node_enabled; then
    node_claim
    {
      printf 'NODE_BIN_DIR=%q\n' "$NODE_BIN_DIR"
      printf 'NODE_CGROUP_ROOT=%q\n' "$NODE_CGROUP_ROOT"
      printf 'IP_FORWARD_BEFORE=%q\n' "$(cat /proc/sys/net/ipv4/ip_forward)"
    } >"$STATE/node.env"
    node_network_up
    NODE_IP_SAN=",IP:$NODE_IP"
  fi
  gen_pki
  node_enabled && node_gen_pki
  start_etcd
  start_apiserver
  CURRENT=""
  write_kubeconfig "$STATE/admin.kubeconfig"
  start_controller_manager
  CURRENT=""
  node_enabled && node_up
  write_kubeconfig "$KUBECONFIG_OUT.tmp"
  mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
  write_env
  UP_DONE=1
  trap - EXIT INT TERM

  local rel_kc=$KUBECONFIG_OUT rel_bin=$CLUSTER_DIR/bin stop_cmd="$0 down"
  if [ -n "${PULLSECRET_INJECTOR_CLUSTER_DIR:-}" ]; then
    stop_cmd="PULLSECRET_INJECTOR_CLUSTER_DIR=$(printf '%q' "$CLUSTER_DIR") $stop_cmd"
  fi
  case "$rel_kc" in "$PWD"/*) rel_kc=${rel_kc#"$PWD"/}; rel_bin=${rel_bin#"$PWD"/} ;; esac
  cat <<EOF
Kubernetes $K8S_VERSION control plane is up ($((SECONDS - t0))s).
  apiserver:  https://$APISERVER_HOST:$APISERVER_PORT
  kubeconfig: $KUBECONFIG_OUT
  env file:   $ENV_OUT   (. it to get KUBECONFIG, APISERVER_URL, CLUSTER_CA_FILE, pids, ...)
  state/logs: $STATE
  kubectl:    $rel_bin/kubectl --kubeconfig $rel_kc get ns
              (or: export KUBECONFIG=$KUBECONFIG_OUT PATH=$CLUSTER_DIR/bin:\$PATH)
  $(if node_enabled; then echo "node:       $NODE_NAME ($NODE_IP), pods in $POD_CIDR"; else echo "No node (PULLSECRET_INJECTOR_NODE=0): pods are admitted and then stay Pending."; fi)
  stop:       $stop_cmd
EOF
}

# ---------------------------------------------------------------------------------------------
# Fault injection: stop / start one component with its recorded command line

component_state_dir() {
  local name=$1 state_dir
  case "$name" in
    etcd | kube-apiserver | kube-controller-manager) ;;
    *) die "unknown component '$name' (etcd, kube-apiserver or kube-controller-manager)" ;;
  esac
  state_dir=$(recorded_state_dir)
  if [ -z "$state_dir" ] || [ ! -d "$state_dir" ]; then
    die "no cluster recorded in $CLUSTER_DIR"
  fi
  [ -f "$state_dir/$name.cmdline" ] ||
    die "no recorded command line for $name (cluster started by an older cluster.sh?)"
  printf '%s' "$state_dir"
}

do_stop_component() {
  local name=$1 state_dir pid
  state_dir=$(component_state_dir "$name")
  pid=$(cat "$state_dir/$name.pid")
  stop_pid "$name" "$pid" "$state_dir" || die "could not stop $name (pid $pid)"
}

do_start_component() {
  local name=$1 pid var
  STATE=$(component_state_dir "$name")
  pid=$(cat "$STATE/$name.pid")
  if pid_is_ours "$pid" "$STATE"; then
    die "$name is running (pid $pid); stop it first"
  fi
  # shellcheck disable=SC1090
  . "$ENV_OUT"
  local -a cmd
  eval "cmd=($(cat "$STATE/$name.cmdline"))"
  APPEND_LOG=1 start "$name" "${cmd[@]}"
  case "$name" in
    etcd) wait_for etcd "etcd healthy on 127.0.0.1:$ETCD_CLIENT_PORT" etcd_healthy ;;
    kube-controller-manager) ;;
    kube-apiserver) ;;
  esac
  # Whatever restarted, the cluster is back when the apiserver is ready again, at the address
  # `up` recorded (node.sh sets NODE_IP also when the cluster runs without a node).
  APISERVER_HOST=${APISERVER_URL#https://}
  APISERVER_HOST=${APISERVER_HOST%:*}
  wait_for kube-apiserver "kube-apiserver ready on https://$APISERVER_HOST:$APISERVER_PORT" \
    apiserver_ready
  case "$name" in
    etcd) var=ETCD_PID ;;
    kube-apiserver) var=APISERVER_PID ;;
    kube-controller-manager) var=CONTROLLER_MANAGER_PID ;;
  esac
  sed -i "s/^export $var=.*/export $var=$(cat "$STATE/$name.pid")/" "$ENV_OUT"
  CURRENT=""
}

# trust-registry HOST:PORT CA-FILE: containerd on the node pulls from https://HOST:PORT trusting
# that CA (a hosts.toml in its hosts directory; read at every pull, no restart).
do_trust_registry() {
  local host=$1 ca=$2 state_dir dir
  [ -r "$ca" ] || die "cannot read the CA file $ca"
  state_dir=$(recorded_state_dir)
  if [ -z "$state_dir" ] || [ ! -f "$state_dir/node.env" ]; then
    die "no cluster with a node is recorded in $CLUSTER_DIR"
  fi
  dir="$state_dir/containerd/certs.d/$host"
  mkdir -p "$dir"
  cp "$ca" "$dir/ca.crt"
  cat >"$dir/hosts.toml" <<EOF
server = "https://$host"

[host."https://$host"]
  capabilities = ["pull", "resolve"]
  ca = "$dir/ca.crt"
EOF
  log "containerd trusts $ca for https://$host"
}

do_restart() {
  do_stop_component "$1"
  do_start_component "$1"
}

with_lock() {
  mkdir -p "$CLUSTER_DIR"
  if command -v flock >/dev/null; then
    exec 8>"$CLUSTER_DIR/.cluster.lock"
    flock 8
  fi
  "$@"
}

case "${1:-}" in
  up) with_lock do_up ;;
  down) if [ -d "$CLUSTER_DIR" ]; then with_lock do_down; fi ;;
  status) do_status ;;
  restart-apiserver) with_lock do_restart kube-apiserver ;;
  restart-etcd) with_lock do_restart etcd ;;
  trust-registry) do_trust_registry "${2:?HOST:PORT}" "${3:?CA file}" ;;
  stop-component) with_lock do_stop_component "${2:?component name}" ;;
  start-component) with_lock do_start_component "${2:?component name}" ;;
  *)
    echo "usage: $0 up|down|status|trust-registry HOST:PORT CA|restart-apiserver|restart-etcd|stop-component NAME|start-component NAME" >&2
    echo "       (see the header of this script for details)" >&2
    exit 2
    ;;
esac
