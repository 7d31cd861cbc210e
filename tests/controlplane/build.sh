#!/usr/bin/env bash
# Builds the real Kubernetes binaries the tests and the demo run against, from the Go module
# proxy, into a per-version cache outside the clone (so a fresh clone on the same machine reuses
# them). Prints the cache's bin directory on stdout; progress goes to stderr.
set -euo pipefail

# shellcheck source=../kubernetes.sh
. "$(dirname "${BASH_SOURCE[0]}")/../kubernetes.sh"
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE_ROOT=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
# Helm is not part of the key: build-tool.sh caches it by its own version.
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"

log() { printf '[control-plane build] %s\n' "$*" >&2; }
# shellcheck source=steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

# The control plane, the node's Kubernetes parts and kubectl: one wrapper module, one version.
KUBE_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

need_build() {
  for tool in "${KUBE_TOOLS[@]}" etcd; do
    [ -x "$BIN/$tool" ] || return 0
  done
  return 1
}

# Caches of earlier versions of this script also keyed helm's version; their Kubernetes and etcd
# binaries are the same builds, so they are linked here instead of being built again.
adopt_earlier_cache() {
  local old tool
  for old in "$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"-helm-*/bin; do
    [ -d "$old" ] || continue
    mkdir -p "$BIN"
    for tool in "${KUBE_TOOLS[@]}" etcd; do
      if [ ! -x "$BIN/$tool" ] && [ -x "$old/$tool" ]; then
        ln "$old/$tool" "$BIN/$tool" 2>/dev/null || cp "$old/$tool" "$BIN/$tool"
      fi
    done
  done
}

if ! need_build; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build the control plane (https://go.dev)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
# One work dir and one lock per cache dir: two builds of one version (two make targets at once)
# take turns, builds of different versions (make test-versions) do not wait for each other.
WORK="$(dirname "$BIN")/build"
mkdir -p "$BIN" "$WORK"
exec 9>"$(dirname "$BIN")/build.lock"
flock 9
adopt_earlier_cache
if ! need_build; then echo "$BIN"; exit 0; fi

build_kubernetes() {
  local dir="$WORK/kubernetes-$K8S_VERSION"
  step "resolving and downloading k8s.io/kubernetes@$K8S_VERSION and its dependencies"
  kubernetes_go_mod "$dir" pullsecret-injector.local/controlplane/kubernetes 2>>"$STEPS_LOG"
  {
    echo
    echo "tool ("
    printf '\tk8s.io/kubernetes/cmd/%s\n' "${KUBE_TOOLS[@]}"
    echo ")"
  } >>"$dir/go.mod"
  (cd "$dir" && quietly go mod tidy)
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(k8s_minor)"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local cmd
  for cmd in "${KUBE_TOOLS[@]}"; do
    [ -x "$BIN/$cmd" ] && continue
    step "building $cmd $K8S_VERSION (a cold build takes several minutes on 2 cores)"
    (cd "$dir" && quietly go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  step "building etcd $ETCD_VERSION"
  local upstream_mod
  upstream_mod=$(cd "$dir" && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>>"$STEPS_LOG" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module pullsecret-injector.local/controlplane/etcd"
    echo
    echo "go 1.26"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    # etcd's server module replaces its sibling modules with local paths; use their tags.
    echo "replace ("
    sed -n 's#^[[:space:]]*\(go\.etcd\.io/etcd/[a-z0-9./-]*\) => \.\./.*#\t\1 => \1 '"$ETCD_VERSION"'#p' "$upstream_mod"
    echo ")"
    echo
    echo "tool go.etcd.io/etcd/server/v3"
  } >"$dir/go.mod"
  (cd "$dir" && quietly go mod tidy)
  (cd "$dir" && quietly go build -trimpath -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

# The steps: etcd, then the Kubernetes modules and each missing binary.
total=0
[ -x "$BIN/etcd" ] || total=1
missing=0
for tool in "${KUBE_TOOLS[@]}"; do
  [ -x "$BIN/$tool" ] || missing=$((missing + 1))
done
[ "$missing" -eq 0 ] || total=$((total + 1 + missing))
steps_init "[control-plane build $K8S_VERSION]" "$total"
[ -x "$BIN/etcd" ] || build_etcd
[ "$missing" -eq 0 ] || build_kubernetes
steps_done
echo "$BIN"
