#!/usr/bin/env bash
# Builds what a real node and the registry tests need, from the Go module proxy and Debian's
# packages, into a per-version cache outside the clone (like build.sh for the control plane):
#   containerd, containerd-shim-runc-v2, ctr   (containerd 2.x; Debian's 1.6 is too old)
#   runc                                       (cgo + libseccomp; Debian's 1.1.5 fails sandboxes)
#   cni/bridge, cni/host-local, cni/loopback, cni/portmap
#   registry                                   (distribution, htpasswd auth)
#   crane                                      (go-containerregistry: images without a daemon)
#   crictl                                     (the CRI client: removes pods properly on the way down)
#   pause.tar                                  (the sandbox image: registry.k8s.io is unreachable)
#   busybox.tar                                (a static busybox image, for test images)
#   preloaded-busybox.tar                      (the same with a label of its own, loaded on the node)
# Prints the cache's bin directory on stdout; progress goes to stderr.
# The kubelet, kube-scheduler and kube-proxy come from build.sh (same module as kube-apiserver).
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.2}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.10.0}
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.1.2}
# shellcheck source=build-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/build-tool.sh"   # CRANE_VERSION
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
CACHE_ROOT=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
BIN="$CACHE_ROOT/node-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_PLUGINS_VERSION-registry-$REGISTRY_VERSION-crane-$CRANE_VERSION-crictl-$CRICTL_VERSION/bin"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[node build] %s\n' "$*" >&2; }
# shellcheck source=steps.sh
. "$SCRIPT_DIR/steps.sh"

ARTIFACTS=(containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback
  cni/portmap registry crane crictl pause.tar busybox.tar preloaded-busybox.tar)

missing() {
  local a
  for a in "${ARTIFACTS[@]}"; do [ -s "$BIN/$a" ] || return 0; done
  return 1
}

if ! missing; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build the node (https://go.dev)"; exit 1; }
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$BIN/cni" "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/build-node.lock"
flock 9
if ! missing; then echo "$BIN"; exit 0; fi

# Debian packages: libseccomp for runc, a static busybox for test images, nft for the node's
# network guard, gcc's static libc for the pause program.
apt_install() {
  local need=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  [ ${#need[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then log "error: installing packages needs root"; exit 1; fi
  quietly apt-get update -qq
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y -qq "${need[@]}"
}

# go_install VERSIONED-PACKAGE OUT [go build flags...]: one main package into $BIN/OUT.
go_install() {
  local pkg=$1 out=$2; shift 2
  [ -s "$BIN/$out" ] && return 0
  step "building $out from $pkg"
  local gobin
  gobin=$(mktemp -d "$CACHE_ROOT/gobin.XXXXXX")
  GOBIN=$gobin quietly go install -trimpath "$@" "$pkg"
  mv "$gobin/$(basename "${pkg%@*}")" "$BIN/$out.tmp"
  mv "$BIN/$out.tmp" "$BIN/$out"
  rm -rf "$gobin"
}

# The steps: the packages if any is missing, each binary not built yet, the images.
GO_OUTS=(containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/loopback cni/host-local
  cni/portmap registry crane crictl)
PACKAGES=(libseccomp-dev pkg-config busybox-static gcc libc6-dev nftables)
total=0
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then total=1; break; fi
done
for out in "${GO_OUTS[@]}"; do [ -s "$BIN/$out" ] || total=$((total + 1)); done
if [ ! -s "$BIN/busybox.tar" ] || [ ! -s "$BIN/pause.tar" ] || [ ! -s "$BIN/preloaded-busybox.tar" ]; then
  total=$((total + 1))
fi
steps_init "[node build]" "$total"
apt_install "${PACKAGES[@]}"

cd "$CACHE_ROOT"
CGO_ENABLED=0 go_install "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  containerd -tags no_btrfs,no_devmapper,no_zfs
CGO_ENABLED=0 go_install "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  containerd-shim-runc-v2
CGO_ENABLED=0 go_install "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" ctr \
  -tags no_btrfs,no_devmapper,no_zfs
CGO_ENABLED=1 go_install "github.com/opencontainers/runc@$RUNC_VERSION" runc -tags seccomp
for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
  CGO_ENABLED=0 go_install "github.com/containernetworking/plugins/plugins/$plugin@$CNI_PLUGINS_VERSION" \
    "cni/${plugin#*/}"
done
CGO_ENABLED=0 go_install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" registry
CGO_ENABLED=0 go_install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" crane
CGO_ENABLED=0 go_install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" crictl

# Image layers and the sandbox image, made without a daemon (see registry.sh).
if [ ! -s "$BIN/busybox.tar" ] || [ ! -s "$BIN/pause.tar" ] || [ ! -s "$BIN/preloaded-busybox.tar" ]; then
  step "making the busybox and pause images"
  NODE_BIN_DIR=$BIN quietly bash "$SCRIPT_DIR/registry.sh" build-base "$BIN"
fi

steps_done
echo "$BIN"
