#!/usr/bin/env bash
# Builds one Go tool of the tests and of the release from the Go module proxy, into a cache
# outside the clone keyed by the tool's version alone (so a new helm never relinks the
# Kubernetes binaries), and prints the binary's path on stdout; progress goes to stderr.
#
# Usage: tests/controlplane/build-tool.sh NAME
#   helm        Helm 4 (HELM_VERSION, default below): the tests' helm
#   helm3       the newest approved Helm 3 (HELM3_VERSION): the chart is proven with both
#   cosign      signs the release image and verifies signatures (COSIGN_VERSION)
#   actionlint  lints .github/workflows (ACTIONLINT_VERSION)
#   crane       images without a Docker daemon (CRANE_VERSION; build-node.sh has its own copy)
#   prometheus  scrapes serve in the metrics e2e scenario (PROMETHEUS_VERSION)
#   promtool    checks and unit-tests the chart's alerting rules (same module and version)
#
# Sourced, it only sets the versions (build-node.sh takes CRANE_VERSION from here).
# Cold builds measured on 2 cores shared with four other builds (load about 25): helm 4 20 min,
# cosign 52 min, helm 3 10 min after helm 4 (shared packages), crane 2 min, actionlint under a
# minute; idle cores take a fraction of that. promtool 7.5 min, then prometheus 6.5 min (shared
# packages), on 2 cores beside two Rust builds (load about 7). Relinking from a warm Go build
# cache: 1-2 min each.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v4.3.2}
HELM3_VERSION=${HELM3_VERSION:-v3.21.4}
COSIGN_VERSION=${COSIGN_VERSION:-v3.1.3}
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
# Prometheus v3 is released as Go module versions v0.3xx (v3.16.0 is v0.316.0).
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}

build_tool_main() {
  local name=${1:-} script_dir cache_root pkg version ldflags="" tags="" key
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cache_root=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
  case "$name" in
    helm)
      version=$HELM_VERSION
      pkg="helm.sh/helm/${version%%.*}/cmd/helm"
      # Helm 4 reads the Kubernetes version it assumes from its client-go module.
      ldflags="-X helm.sh/helm/${version%%.*}/internal/version.version=$version"
      key="helm-$version"
      ;;
    helm3)
      # shellcheck source=../kubernetes.sh
      . "$script_dir/../kubernetes.sh"
      local minor=${K8S_VERSION#v1.}
      minor=${minor%%.*}
      version=$HELM3_VERSION
      pkg="helm.sh/helm/v3/cmd/helm"
      # Helm 3 takes its own version and the Kubernetes version it assumes (helm template,
      # kubeVersion checks) from ldflags.
      ldflags="-X helm.sh/helm/v3/internal/version.version=$version"
      ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
      ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
      key="helm-$version-k8s-1.$minor"
      ;;
    cosign) version=$COSIGN_VERSION; pkg="github.com/sigstore/cosign/${version%%.*}/cmd/cosign"; key="cosign-$version" ;;
    actionlint) version=$ACTIONLINT_VERSION; pkg="github.com/rhysd/actionlint/cmd/actionlint"; key="actionlint-$version" ;;
    crane) version=$CRANE_VERSION; pkg="github.com/google/go-containerregistry/cmd/crane"; key="crane-$version" ;;
    prometheus | promtool)
      version=$PROMETHEUS_VERSION
      pkg="github.com/prometheus/prometheus/cmd/$name"
      # The tests scrape static targets only: remove_all_sd (Prometheus' own build tag) leaves
      # out the cloud and Kubernetes service discoveries, most of the build. No web UI assets
      # (builtinassets) either: the tests use the HTTP API.
      tags="remove_all_sd"
      ldflags="-X github.com/prometheus/common/version.Version=$version"
      key="$name-$version"
      ;;
    *)
      sed -n '6,14p' "${BASH_SOURCE[0]}" >&2
      return 2
      ;;
  esac
  local dir="$cache_root/tools/$key"
  local bin="$dir/${pkg##*/}"
  if [ -x "$bin" ]; then
    echo "$bin"
    return 0
  fi
  command -v go >/dev/null || { echo "[tools] Go is required to build $name (https://go.dev)" >&2; return 1; }
  mkdir -p "$dir"
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    # shellcheck source=steps.sh
    . "$script_dir/steps.sh"
    steps_init "[tools $name]" 1
    step "building $name $version from the Go module proxy"
    local gobin
    gobin=$(mktemp -d "$dir.XXXXXX")
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOBIN=$gobin \
      quietly go install -trimpath -tags "$tags" -ldflags "$ldflags" "$pkg@$version"
    mv "$gobin/${pkg##*/}" "$bin"
    rm -rf "$gobin"
    steps_done
  fi
  exec 9>&-
  echo "$bin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  build_tool_main "$@"
fi
