#!/usr/bin/env bash
# `make image`: the container image of pullsecret-injector, made without a Docker daemon.
#
# This is the release path (hack/release.sh pushes these images); the Dockerfile makes the same
# shape with a Docker daemon. One layer with the binary as /pullsecret-injector, exactly the
# shared libraries it links (glibc, libgcc_s: what the Dockerfile's distroless cc base
# provides), and the nonroot user 65532 in /etc/passwd; entrypoint `/pullsecret-injector serve`,
# user 65532:65532, this machine's platform (linux/amd64 or linux/arm64), OCI media types, the
# Dockerfile's labels.
#
# The image has the system's CA certificates (/etc/ssl/certs/ca-certificates.crt), as the
# distroless base has them: the vendor plugins it runs call their vendors' APIs over HTTPS.
#
# With --credential-providers it makes the credential-providers image instead (the chart's
# credentialProviders.image): the vendor plugins in /plugins (jdcloud-jcr-credential-provider,
# huaweicloud-swr-credential-provider; credential-providers/README.md) and a minimal /bin/cp
# for the chart's init container.
#
# Usage: hack/image.sh [--credential-providers] [--binary PATH] [--push REF] [OUT.tar]
#   OUT.tar        the image tarball (default target/image/pullsecret-injector.tar, or
#                  target/image/credential-providers.tar)
#   --binary PATH  use this build of the binary instead of `cargo build --release` (with
#                  --credential-providers: the directory holding the plugin builds)
#   --push REF     also push it to REF (DOCKER_CONFIG for credentials)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
PUSH=""
BINARY=""
PLUGINS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --push) PUSH=${2:?image reference}; shift 2 ;;
    --binary) BINARY=${2:?binary path}; shift 2 ;;
    --credential-providers) PLUGINS=1; shift ;;
    -*) echo "usage: $0 [--credential-providers] [--binary PATH] [--push REF] [OUT.tar]" >&2; exit 2 ;;
    *) OUT=$1; shift ;;
  esac
done
if [ -n "$PLUGINS" ]; then
  OUT=${OUT:-$ROOT/target/image/credential-providers.tar}
else
  OUT=${OUT:-$ROOT/target/image/pullsecret-injector.tar}
fi

log() { printf '[image] %s\n' "$*" >&2; }

# crane alone (not the whole node of build-node.sh): a release runner builds nothing else.
CRANE=$(bash "$ROOT/tests/controlplane/build-tool.sh" crane)
PLUGIN_NAMES=(jdcloud-jcr-credential-provider huaweicloud-swr-credential-provider)
if [ -z "$BINARY" ]; then
  if [ -n "$PLUGINS" ]; then
    log "building the credential provider plugins"
    (cd "$ROOT" && cargo build --release --locked --bin credential-providers-copy \
      "${PLUGIN_NAMES[@]/#/--bin=}")
    BINARY=$ROOT/target/release
  else
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --locked --bin pullsecret-injector)
    BINARY=$ROOT/target/release/pullsecret-injector
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/etc" "$rootfs/tmp"

# A binary at PATH in the image, with every shared library it loads at the path the loader
# looks for it.
add_binary() {
  local source=$1 path=$2 lib
  [ -x "$source" ] || { log "error: $source is not an executable"; exit 1; }
  mkdir -p "$rootfs$(dirname "$path")"
  install -m 0755 "$source" "$rootfs$path"
  strip "$rootfs$path" 2>/dev/null || true
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(ldd "$source" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
}

if [ -n "$PLUGINS" ]; then
  for name in "${PLUGIN_NAMES[@]}"; do
    add_binary "$BINARY/$name" "/plugins/$name"
  done
  add_binary "$BINARY/credential-providers-copy" /bin/cp
else
  add_binary "$BINARY" /pullsecret-injector
  # The vendor plugins the webhook runs reach their APIs over HTTPS.
  ca_bundle=/etc/ssl/certs/ca-certificates.crt
  [ -s "$ca_bundle" ] || { log "error: no $ca_bundle (Debian: apt-get install ca-certificates)"; exit 1; }
  mkdir -p "$rootfs/etc/ssl/certs"
  cp -L "$ca_bundle" "$rootfs$ca_bundle"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf "$work/layer.tar" .

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
revision=${PULLSECRET_INJECTOR_REVISION:-$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
mkdir -p "$(dirname "$OUT")"
if [ -n "$PLUGINS" ]; then
  name=pullsecret-injector-credential-providers
  description="Kubelet credential provider plugins for JD Cloud JCR and Huawei Cloud SWR, for pullsecret-injector's credentialProviders.image"
  # Run alone it prints how to copy the plugins out.
  run_as=(--entrypoint /bin/cp)
else
  name=pullsecret-injector
  description="Kubernetes mutating admission webhook that injects the imagePullSecrets the kubelet would use"
  run_as=(--entrypoint /pullsecret-injector --cmd serve)
fi
NODE_BIN_DIR=$(dirname "$CRANE") bash "$ROOT/tests/controlplane/registry.sh" image "$OUT.tmp" "$work/layer.tar" \
  -t "pullsecret-injector.local/$name:$version" \
  "${run_as[@]}" --user 65532:65532 \
  --label "org.opencontainers.image.title=$name" \
  --label "org.opencontainers.image.description=$description" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT ($(du -h "$OUT" | cut -f1))"
if [ -n "$PUSH" ]; then
  "$CRANE" push "$OUT" "$PUSH" >/dev/null
  log "pushed $PUSH"
fi
