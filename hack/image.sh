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
# Usage: hack/image.sh [--binary PATH] [--push REF] [OUT.tar]
#   OUT.tar        the image tarball (default target/image/pullsecret-injector.tar)
#   --binary PATH  use this build of the binary instead of `cargo build --release`
#   --push REF     also push it to REF (DOCKER_CONFIG for credentials)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/image/pullsecret-injector.tar
PUSH=""
BINARY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --push) PUSH=${2:?image reference}; shift 2 ;;
    --binary) BINARY=${2:?binary path}; shift 2 ;;
    -*) echo "usage: $0 [--binary PATH] [--push REF] [OUT.tar]" >&2; exit 2 ;;
    *) OUT=$1; shift ;;
  esac
done

log() { printf '[image] %s\n' "$*" >&2; }

# crane alone (not the whole node of build-node.sh): a release runner builds nothing else.
CRANE=$(bash "$ROOT/tests/controlplane/build-tool.sh" crane)
if [ -z "$BINARY" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release --locked --quiet --bin pullsecret-injector)
  BINARY=$ROOT/target/release/pullsecret-injector
fi
[ -x "$BINARY" ] || { log "error: $BINARY is not an executable"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/etc" "$rootfs/tmp"
install -m 0755 "$BINARY" "$rootfs/pullsecret-injector"
strip "$rootfs/pullsecret-injector" 2>/dev/null || true
# Every shared library the binary loads, at the path the loader looks for it.
while read -r lib; do
  [ -n "$lib" ] || continue
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done < <(ldd "$BINARY" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf "$work/layer.tar" .

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
revision=${PULLSECRET_INJECTOR_REVISION:-$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
mkdir -p "$(dirname "$OUT")"
NODE_BIN_DIR=$(dirname "$CRANE") bash "$ROOT/tests/controlplane/registry.sh" image "$OUT.tmp" "$work/layer.tar" \
  -t "pullsecret-injector.local/pullsecret-injector:$version" \
  --entrypoint /pullsecret-injector --cmd serve --user 65532:65532 \
  --label org.opencontainers.image.title=pullsecret-injector \
  --label "org.opencontainers.image.description=Kubernetes mutating admission webhook that injects the imagePullSecrets the kubelet would use" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT ($(du -h "$OUT" | cut -f1))"
if [ -n "$PUSH" ]; then
  "$CRANE" push "$OUT" "$PUSH" >/dev/null
  log "pushed $PUSH"
fi
