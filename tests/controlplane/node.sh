# shellcheck shell=bash
# The node of the local cluster: a bridge with the node's address, containerd + runc, the CNI
# bridge plugin, kube-scheduler, kubelet and kube-proxy (nftables mode), all run as processes of
# this machine with their state under the cluster's state directory. Sourced by cluster.sh.
#
# Network rules: the node's address is the bridge's gateway address (NODE_IP, never eth0's),
# pods live in their own network namespaces on that bridge, nothing is masqueraded, and an
# nftables table of ours drops anything forwarded between the bridge and any other interface —
# so pod traffic reaches the host and other pods only, never leaves the machine.
#
# One node runs on the machine at a time (kube-proxy's nftables table has a fixed name): the
# owner file names the state directory that holds it. A node whose processes are gone (a
# killed run) is cleaned up by the next `up` or `down`.

NODE_OWNER=/run/pullsecret-injector-node.owner
NODE_BRIDGE=psi-br0
NODE_SUBNET_PREFIX=10.217.0
NODE_IP=$NODE_SUBNET_PREFIX.1
POD_CIDR=$NODE_SUBNET_PREFIX.0/24
NODE_NAME=pullsecret-injector-node
NODE_NFT_TABLE=pullsecret_injector_node
NODE_CGROUP_ROOT=/pullsecret-injector-node
SANDBOX_IMAGE=pullsecret-injector.local/pause:1
NODE_COMPONENTS=(kube-proxy kubelet kube-scheduler containerd)

node_enabled() { [ "${PULLSECRET_INJECTOR_NODE:-1}" != 0 ]; }

node_log() { printf '[node] %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Clean-up (also of a killed run): containers, shims, mounts, namespaces, links, rules.

# Kills every process whose command line names the state dir (shims and containerd included),
# except the control plane's own, which `down` stops gracefully afterwards.
node_kill_stragglers() {
  local state_dir=$1 pid keep=" $$ " name
  for name in "${COMPONENTS[@]}"; do
    keep+="$(cat "$state_dir/$name.pid" 2>/dev/null || true) "
  done
  for pid in $(pgrep -f -- "$state_dir" 2>/dev/null || true); do
    case "$keep" in *" $pid "*) continue ;; esac
    pid_is_ours "$pid" "$state_dir" || continue
    node_log "killing leftover process $pid ($(proc_cmdline "$pid" | cut -c1-80))"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Unmounts everything below the state dir, deepest first (the kubelet bind-mounts its root dir
# onto itself; pod volumes, overlay rootfs and network namespaces live below it too).
node_unmount_all() {
  local state_dir=$1 mnt i
  for i in 1 2 3; do
    local found=0
    while read -r mnt; do
      found=1
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$state_dir" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
    [ "$found" -eq 0 ] && return 0
  done
  if awk -v d="$state_dir" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    node_log "error: mounts below $state_dir survived"
    return 1
  fi
}

# Every container the runtime started, by runc itself: works with containerd already gone.
node_kill_containers() {
  local state_dir=$1 runc=$2 root id
  for root in "$state_dir"/containerd/runc/*; do
    [ -d "$root" ] || continue
    for id in $("$runc" --root "$root" list -q 2>/dev/null || true); do
      "$runc" --root "$root" kill -a "$id" KILL 2>/dev/null || true
      "$runc" --root "$root" delete -f "$id" 2>/dev/null || true
    done
  done
}

# Removes the cgroups the kubelet and runc made under our cgroup root (empty ones only).
node_remove_cgroups() {
  local hierarchy dir
  for hierarchy in /sys/fs/cgroup/*/; do
    dir="$hierarchy${NODE_CGROUP_ROOT#/}"
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

node_network_down() {
  nft delete table inet "$NODE_NFT_TABLE" 2>/dev/null || true
  nft delete table ip kube-proxy 2>/dev/null || true
  nft delete table ip6 kube-proxy 2>/dev/null || true
  local link
  # Host ends of pod veths whose namespace is already gone disappear with it; any other one
  # still attached to our bridge goes now, then the bridge.
  for link in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link delete "$link" 2>/dev/null || true
  done
  ip link delete "$NODE_BRIDGE" 2>/dev/null || true
}

# Full stop of the node recorded in a state dir. Safe to run twice and on a half-started node.
node_down() {
  local state_dir=$1 name pid rc=0
  [ -f "$state_dir/node.env" ] || return 0
  local NODE_BIN_DIR IP_FORWARD_BEFORE
  # shellcheck disable=SC1090
  . "$state_dir/node.env"
  local sock="$state_dir/containerd/containerd.sock"
  for name in kube-proxy kubelet kube-scheduler; do
    pid=$(cat "$state_dir/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] && { stop_pid "$name" "$pid" "$state_dir" || rc=1; }
  done
  # Pods removed through the CRI, so the CNI plugin releases addresses and veths properly.
  pid=$(cat "$state_dir/containerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && pid_is_ours "$pid" "$state_dir" && [ -S "$sock" ]; then
    timeout 60 "$NODE_BIN_DIR/crictl" --runtime-endpoint "unix://$sock" --timeout 20s \
      rmp --all --force >/dev/null 2>&1 || node_log "warning: crictl rmp failed; killing containers"
  fi
  node_kill_containers "$state_dir" "$NODE_BIN_DIR/runc"
  [ -n "$pid" ] && { stop_pid containerd "$pid" "$state_dir" || rc=1; }
  node_kill_stragglers "$state_dir"
  node_unmount_all "$state_dir" || rc=1
  node_remove_cgroups
  node_network_down
  if [ -n "${IP_FORWARD_BEFORE:-}" ]; then
    echo "$IP_FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  fi
  if [ "$(cat "$NODE_OWNER" 2>/dev/null)" = "$state_dir" ]; then rm -f "$NODE_OWNER"; fi
  return "$rc"
}

# A node left by a run that was killed (its owner's processes are gone) is cleaned up; a live
# one of another cluster is an error.
node_claim() {
  local owner
  owner=$(cat "$NODE_OWNER" 2>/dev/null || true)
  if [ -n "$owner" ] && [ "$owner" != "$STATE" ]; then
    local live=0 name pid
    for name in kubelet containerd kube-apiserver; do
      pid=$(cat "$owner/$name.pid" 2>/dev/null || true)
      [ -n "$pid" ] && pid_is_ours "$pid" "$owner" && live=1
    done
    if [ "$live" -eq 1 ]; then
      die "another cluster with a node is running ($owner); stop it first (its 'down'), or start this one without a node (PULLSECRET_INJECTOR_NODE=0)"
    fi
    node_log "cleaning up the node of a run that did not stop ($owner)"
    node_down "$owner" || die "could not clean up $owner"
    [ -e "$owner/$MARKER" ] && rm -rf "$owner"
  fi
  mkdir -p "$(dirname "$NODE_OWNER")"
  printf '%s\n' "$STATE" >"$NODE_OWNER"
  # A bridge or table without an owner (an owner file lost with /run) goes too.
  node_network_down
}

# ---------------------------------------------------------------------------------------------
# Start-up

node_network_up() {
  log "node network: bridge $NODE_BRIDGE $NODE_IP/24, pods $POD_CIDR, forwarding kept on the bridge"
  ip link add "$NODE_BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  nft -f - <<EOF
table inet $NODE_NFT_TABLE {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$NODE_BRIDGE" oifname != "$NODE_BRIDGE" counter drop
    oifname "$NODE_BRIDGE" iifname != "$NODE_BRIDGE" counter drop
  }
}
EOF
}

# Client and serving certificates of the node's components, signed by the cluster CA.
node_gen_pki() {
  local d=$STATE
  CURRENT=pki
  {
    issue_cert "$d" kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    issue_cert "$d" kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
    issue_cert "$d" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    issue_cert "$d" kube-scheduler "/CN=system:kube-scheduler" clientAuth
    issue_cert "$d" kube-proxy "/CN=system:kube-proxy" clientAuth
  } >>"$d/pki.log" 2>&1
  CURRENT=""
  chmod 600 "$d"/*.key
}

write_cert_kubeconfig() {
  local out=$1 name=$2 ca_data
  ca_data=$(openssl base64 -A <"$STATE/ca.crt")
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority-data: $ca_data
users:
- name: $name
  user:
    client-certificate: $STATE/$name.crt
    client-key: $STATE/$name.key
contexts:
- name: local
  context: {cluster: local, user: $name}
current-context: local
EOF
  chmod 600 "$out"
}

start_containerd() {
  local d=$STATE/containerd
  mkdir -p "$d/root" "$d/state" "$d/certs.d" "$d/runc" "$d/opt" "$STATE/cni/net.d" "$STATE/cni/ipam"
  CONTAINERD_SOCK=$d/containerd.sock
  cat >"$d/config.toml" <<EOF
version = 3
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins.'io.containerd.internal.v1.opt']
  path = "$d/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$SANDBOX_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$d/certs.d"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$NODE_BIN_DIR/cni"]
    conf_dir = "$STATE/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$NODE_BIN_DIR/runc"
        Root = "$d/runc"
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  cat >"$STATE/cni/net.d/10-pullsecret-injector.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pullsecret-injector-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "$NODE_SUBNET_PREFIX.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "backend": "nftables", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd "$NODE_BIN_DIR/containerd" --config "$d/config.toml"
  wait_for containerd "containerd serving on $CONTAINERD_SOCK" \
    "$NODE_BIN_DIR/ctr" --address "$CONTAINERD_SOCK" version
  CURRENT=containerd
  # The sandbox image, and busybox (pullsecret-injector.local/busybox:1) for pods whose
  # container must not come from a registry (`imagePullPolicy: Never`).
  local image
  for image in pause preloaded-busybox; do
    "$NODE_BIN_DIR/ctr" --address "$CONTAINERD_SOCK" -n k8s.io images import \
      --platform linux/amd64 "$NODE_BIN_DIR/$image.tar" >>"$STATE/containerd.log" 2>&1
  done
  CURRENT=""
}

start_scheduler() {
  write_cert_kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler
  start kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="$(free_ports 1)"
}

start_kubelet() {
  local port healthz
  read -r port healthz <<<"$(free_ports 2)"
  mkdir -p "$STATE/kubelet" "$STATE/kubelet-pki" "$STATE/pod-logs"
  write_cert_kubeconfig "$STATE/kubelet.kubeconfig" kubelet-client
  # The machine mounts cgroup v1 (cgroup2 only as an empty `unified`), hence cgroupfs and
  # failCgroupV1: false. Evictions and image GC are off: a shared disk must not evict test pods.
  # Every field exists from 1.31 on (failCgroupV1 is the newest), so one file serves every
  # release of tests/kubernetes.sh.
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
tlsCertFile: $STATE/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
podLogsDir: $STATE/pod-logs
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: ""
shutdownGracePeriod: 0s
EOF
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ "$hierarchy" = /sys/fs/cgroup/unified/ ] && continue
    mkdir -p "$hierarchy${NODE_CGROUP_ROOT#/}" 2>/dev/null || true
  done
  if [ -d "/sys/fs/cgroup/cpuset${NODE_CGROUP_ROOT}" ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset${NODE_CGROUP_ROOT}/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset${NODE_CGROUP_ROOT}/cpuset.mems"
  fi
  start kubelet "$BIN_DIR/kubelet" \
    --config="$STATE/kubelet.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --root-dir="$STATE/kubelet" \
    --cert-dir="$STATE/kubelet-pki"
}

start_kube_proxy() {
  local healthz metrics
  read -r healthz metrics <<<"$(free_ports 2)"
  write_cert_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy
  # nftables mode: beta and on by default in 1.31, GA in 1.33; the oldest release tested is 1.32.
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$healthz
metricsBindAddress: 127.0.0.1:$metrics
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0}
EOF
  start kube-proxy "$BIN_DIR/kube-proxy" --config="$STATE/kube-proxy.yaml"
  KUBE_PROXY_HEALTHZ=$healthz
}

node_ready() {
  kubectl_admin get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

kube_proxy_synced() {
  curl -fsS --max-time 2 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ/healthz" >/dev/null &&
    nft list table ip kube-proxy >/dev/null 2>&1
}

kubectl_admin() {
  "$BIN_DIR/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"
}

# Everything of the node, in order; called by `up` after the control plane is ready.
node_up() {
  command -v nft >/dev/null || die "nft is required for the node (tests/controlplane/build-node.sh installs it)"
  start_containerd
  start_scheduler
  start_kubelet
  wait_for kubelet "node $NODE_NAME Ready" node_ready
  start_kube_proxy
  wait_for kube-proxy "kube-proxy programmed the service rules" kube_proxy_synced
}
