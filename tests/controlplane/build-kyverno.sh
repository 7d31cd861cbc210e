#!/usr/bin/env bash
# Builds Kyverno's admission controller (cmd/kyverno) from the Go module proxy, for the
# benchmark's side-by-side comparison, into a per-version cache outside the clone (like build.sh
# does for the control plane). Prints the cached binary's directory on stdout (it also holds
# Kyverno's CRDs, copied from the module); progress goes to stderr.
set -euo pipefail

KYVERNO_VERSION=${KYVERNO_VERSION:-v1.19.1}
CACHE_ROOT=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
DIR="$CACHE_ROOT/kyverno-$KYVERNO_VERSION"

log() { printf '[kyverno build] %s\n' "$*" >&2; }

built() { [ -x "$DIR/bin/kyverno" ] && [ -d "$DIR/crds" ]; }

if built; then
  echo "$DIR"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build Kyverno (https://go.dev)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
WORK="$CACHE_ROOT/build/kyverno-$KYVERNO_VERSION"
mkdir -p "$DIR/bin" "$WORK"
exec 9>"$CACHE_ROOT/build-kyverno.lock"
flock 9
if built; then echo "$DIR"; exit 0; fi

log "resolving github.com/kyverno/kyverno@$KYVERNO_VERSION from the module proxy"
info=$(cd "$WORK" && go mod download -json "github.com/kyverno/kyverno@$KYVERNO_VERSION")
upstream_mod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
upstream_dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
# A wrapper module: Kyverno's go version, its require, and its replace directives (a replace in
# a dependency's go.mod does not apply to the module that builds it).
{
  echo "module pullsecret-injector.local/bench/kyverno"
  echo
  sed -n 's/^\(go [0-9.]*\)$/\1/p' "$upstream_mod"
  echo
  echo "require github.com/kyverno/kyverno $KYVERNO_VERSION"
  echo
  sed -n 's/^\(replace [^(]*=> .*\)$/\1/p' "$upstream_mod"
  echo
  echo "tool github.com/kyverno/kyverno/cmd/kyverno"
} >"$WORK/go.mod"
# shellcheck source=steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/steps.sh"
steps_init "[kyverno build]" 2
step "downloading Kyverno's dependencies (go mod tidy)"
(cd "$WORK" && quietly go mod tidy)
step "building kyverno $KYVERNO_VERSION (a cold build takes a long time on 2 cores)"
(cd "$WORK" && quietly go build -trimpath \
  -ldflags "-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=$KYVERNO_VERSION" \
  -o "$DIR/bin/kyverno.tmp" github.com/kyverno/kyverno/cmd/kyverno)
rm -rf "$DIR/crds.tmp"
cp -r "$upstream_dir/config/crds" "$DIR/crds.tmp"
chmod -R u+w "$DIR/crds.tmp"
mv "$DIR/bin/kyverno.tmp" "$DIR/bin/kyverno"
rm -rf "$DIR/crds"
mv "$DIR/crds.tmp" "$DIR/crds"
steps_done
echo "$DIR"
