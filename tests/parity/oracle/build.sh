#!/usr/bin/env bash
# Builds the parity oracle (main.go here) against the Kubernetes release of tests/kubernetes.sh,
# from the Go module proxy, into a cache outside the clone keyed by that release, the Go
# toolchain (whose encoding/json, net/url and path/filepath the kubelet runs on) and main.go
# itself. Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../kubernetes.sh
. "$HERE/../../kubernetes.sh"

log() { printf '[parity oracle build] %s\n' "$*" >&2; }
# shellcheck source=../../controlplane/steps.sh
. "$HERE/../../controlplane/steps.sh"

# main.go calls the keyring API of 1.33 and later (TrackedAuthConfig); older releases lack it.
if [ "$(k8s_minor)" -lt 33 ]; then
  log "error: the oracle needs Kubernetes 1.33 or later (K8S_VERSION=$K8S_VERSION); run the parity test on $K8S_NEWEST"
  exit 1
fi
command -v go >/dev/null || { log "Go is required to build the parity oracle (https://go.dev)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
CACHE_ROOT=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
DIR="$CACHE_ROOT/parity-oracle-k8s-$K8S_VERSION-$(go env GOVERSION)"
SOURCE_HASH=$(sha256sum "$HERE/main.go" | cut -c1-16)
BIN="$DIR/oracle-$SOURCE_HASH"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$DIR"
exec 9>"$DIR/build.lock"
flock 9
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

steps_init "[parity oracle build]" 2
step "downloading k8s.io/kubernetes@$K8S_VERSION for the oracle"
MODULE="$DIR/module"
rm -rf "$MODULE"
kubernetes_go_mod "$MODULE" pullsecret-injector.local/parity/oracle 2>>"$STEPS_LOG"
cp "$HERE/main.go" "$MODULE/main.go"
(cd "$MODULE" && quietly go mod tidy)
step "building the oracle with $(go env GOVERSION) (about a minute on 2 cores with an empty Go build cache)"
(cd "$MODULE" && quietly go build -trimpath -o "$BIN.tmp" .)
mv "$BIN.tmp" "$BIN"
# Oracles of earlier versions of main.go are never used again.
find "$DIR" -maxdepth 1 -name 'oracle-*' ! -name "oracle-$SOURCE_HASH" -delete
steps_done
echo "$BIN"
