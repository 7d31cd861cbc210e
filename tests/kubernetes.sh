# Sourced by every script that builds against Kubernetes: the control plane and node of the e2e
# suite and the demo (tests/controlplane/build.sh, cluster.sh), the chart test, and the parity
# oracle (tests/parity/oracle/build.sh). One release for all of them; K8S_VERSION=v1.x.y in the
# environment selects another.
# shellcheck shell=bash

K8S_VERSION=${K8S_VERSION:-v1.37.2}
export K8S_VERSION

# kubernetes_go_mod DIR MODULE: writes DIR/go.mod for a wrapper module that builds against
# k8s.io/kubernetes@$K8S_VERSION. Upstream points its staging modules (k8s.io/api, ...) at
# ./staging/src/...; the wrapper points them at their published versions (v0.MINOR.PATCH)
# instead. The list, the go version and the godebug settings come from upstream's own go.mod,
# so they track new releases. Callers append blocks of their own (tool, require) and tidy.
kubernetes_go_mod() {
  local dir=$1 module=$2 upstream_mod minor staging_version
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  staging_version="v0.$minor.${K8S_VERSION##*.}"
  mkdir -p "$dir"
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module $module"
    echo
    sed -n 's/^\(go [0-9.]*\)$/\1/p; s/^\(godebug .*\)$/\1/p' "$upstream_mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9.-]*\) => \./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$upstream_mod"
    echo ")"
  } >"$dir/go.mod"
}
