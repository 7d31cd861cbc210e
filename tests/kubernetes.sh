# Sourced by every script that builds against Kubernetes: the control plane and node of the e2e
# suite and the demo (tests/controlplane/build.sh, cluster.sh), the chart test, and the parity
# oracle (tests/parity/oracle/build.sh). One release for all of them; K8S_VERSION=v1.x.y in the
# environment selects another.
# shellcheck shell=bash

# The tested releases (README "Supported Kubernetes versions"): the newest patch of each minor
# whose k8s.io/kubernetes module and staging modules (the ones the binaries import) the Go module
# proxy all serves, built with our Go. For 1.32 that is v1.32.9: the proxy lacks
# k8s.io/endpointslice v0.32.13, kubectl and cli-runtime v0.32.12, csi-translation-lib and kms
# v0.32.11, several of v0.32.10.
#   K8S_NEWEST        the whole suite, the parity oracle, the demo
#   K8S_NO_PULL_CHECK the last minor whose kubelet lets any pod use a cached private image
#                     (KubeletEnsureSecretPulledImages arrived, on by default, in 1.35)
#   K8S_OLDEST        the oldest supported minor (the chart's kubeVersion)
K8S_NEWEST=v1.37.2
K8S_NO_PULL_CHECK=v1.34.4
K8S_OLDEST=v1.32.9
K8S_VERSION=${K8S_VERSION:-$K8S_NEWEST}
export K8S_VERSION

# The minor number of $K8S_VERSION (37 for v1.37.2).
k8s_minor() {
  local minor=${K8S_VERSION#v1.}
  printf '%s' "${minor%%.*}"
}

# kubernetes_go_mod DIR MODULE: writes DIR/go.mod for a wrapper module that builds against
# k8s.io/kubernetes@$K8S_VERSION. Upstream points its staging modules (k8s.io/api, ...) at
# ./staging/src/...; the wrapper points them at their published versions (v0.MINOR.PATCH)
# instead. The list, the go version and the godebug settings come from upstream's own go.mod,
# so they track new releases. Callers append blocks of their own (tool, require) and tidy.
kubernetes_go_mod() {
  local dir=$1 module=$2 upstream_mod staging_version go_line
  staging_version="v0.$(k8s_minor).${K8S_VERSION##*.}"
  mkdir -p "$dir"
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module $module"
    echo
    # `tool` lines need go >= 1.24; releases before 1.34 say 1.23 (their godebug default stays).
    go_line=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_mod")
    case "$go_line" in 1.2[0-3] | 1.2[0-3].*) go_line=1.24.0 ;; esac
    echo "go $go_line"
    sed -n 's/^\(godebug .*\)$/\1/p' "$upstream_mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9.-]*\) => \./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$upstream_mod"
    echo ")"
  } >"$dir/go.mod"
}
