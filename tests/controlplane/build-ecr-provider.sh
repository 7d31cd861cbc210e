#!/usr/bin/env bash
# Builds the real ecr-credential-provider (k8s.io/cloud-provider-aws, a kubelet credential
# provider plugin) from the Go module proxy into a per-version cache outside the clone, for the
# tests that drive it with our plugin runner (tests/ecr_credential_provider.rs).
# Prints the path of the executable on stdout; progress goes to stderr.
#
# The module's go.mod needs one replace (github.com/google/cel-go moved to
# github.com/cel-expr/cel-go); a wrapper module repeats it.
set -euo pipefail

CLOUD_PROVIDER_AWS_VERSION=${CLOUD_PROVIDER_AWS_VERSION:-v1.37.1}
CEL_GO_VERSION=${CEL_GO_VERSION:-v0.31.0}
CACHE_ROOT=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
DIR="$CACHE_ROOT/ecr-credential-provider-$CLOUD_PROVIDER_AWS_VERSION"
OUT="$DIR/bin/ecr-credential-provider"

log() { printf '[ecr build] %s\n' "$*" >&2; }
# shellcheck source=steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { log "Go is required (https://go.dev)"; exit 1; }
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$DIR/bin" "$DIR/module"
exec 9>"$CACHE_ROOT/build-ecr-provider.lock"
flock 9
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
steps_init "[ecr build]" 2
step "downloading k8s.io/cloud-provider-aws $CLOUD_PROVIDER_AWS_VERSION and its dependencies"
cat >"$DIR/module/go.mod" <<MOD
module pullsecret-injector.local/ecr-credential-provider

go 1.26.0

require k8s.io/cloud-provider-aws $CLOUD_PROVIDER_AWS_VERSION

replace github.com/google/cel-go => github.com/cel-expr/cel-go $CEL_GO_VERSION

tool k8s.io/cloud-provider-aws/cmd/ecr-credential-provider
MOD
(cd "$DIR/module" && quietly go mod tidy)
step "building ecr-credential-provider"
(cd "$DIR/module" && CGO_ENABLED=0 quietly go build -trimpath -o "$OUT.tmp" k8s.io/cloud-provider-aws/cmd/ecr-credential-provider)
mv "$OUT.tmp" "$OUT"
steps_done
echo "$OUT"
