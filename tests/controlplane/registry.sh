#!/usr/bin/env bash
# Private registries and images for the node: a real distribution registry with htpasswd auth
# on a free loopback port, and images made without a Docker daemon (crane).
#
# Usage: tests/controlplane/registry.sh COMMAND ...
#   start DIR USER PASSWORD [http|tls [ADDRESS]]
#                             starts a registry whose data, config, htpasswd, pid and log live in
#                             DIR, on ADDRESS (default 127.0.0.1; else an address of an interface
#                             this machine's cluster made, such as the node's bridge); prints
#                             "ADDRESS:PORT" once it answers. Only USER:PASSWORD may pull or push.
#                             With `tls` it serves HTTPS with a certificate of a CA of its own,
#                             DIR/ca.crt (the node trusts it after
#                             `cluster.sh trust-registry ADDRESS:PORT DIR/ca.crt`; containerd
#                             does not verify localhost registries at all).
#   stop DIR                  stops the registry started in DIR (by its recorded pid).
#   push-busybox DIR REF      pushes the busybox image (a static busybox; runs `sleep 3600`) to
#                             REF, with DIR's registry credentials.
#   push DIR TARBALL REF      pushes an image tarball to REF, with DIR's registry credentials.
#   image OUT LAYER [FLAGS]   makes an OCI image tarball of one layer (this machine's
#                             platform: linux/amd64 or linux/arm64); FLAGS are
#                             `crane mutate` flags (--entrypoint, --cmd, --user, --label, -t).
#   build-base BIN            (build-node.sh) makes BIN/busybox.tar, BIN/preloaded-busybox.tar
#                             and BIN/pause.tar.
#
# The node's containerd pulls from 127.0.0.1:<port> or localhost:<port> over plain HTTP with no
# per-registry setup (its localhost fallback); see the README. Needs build-node.sh's binaries.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[registry] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# NODE_BIN_DIR (cluster.env exports it) skips the build check.
node_bin() {
  if [ -n "${NODE_BIN_DIR:-}" ]; then echo "$NODE_BIN_DIR"; else bash "$SCRIPT_DIR/build-node.sh"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bcrypt, the only hash the registry's htpasswd accepts (glibc's crypt makes $2b$ hashes).
bcrypt() {
  python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1"
}

# A CA and a serving certificate for ADDRESS, 127.0.0.1 and localhost, in DIR.
make_tls() {
  local dir=$1 address=$2
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 2 -subj "/CN=test registry CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$dir/tls.key" -out "$dir/tls.csr" -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
      "$address" >"$dir/tls.ext"
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 2 -extfile "$dir/tls.ext" -out "$dir/tls.crt"
  } >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; die "could not make the TLS certificates"; }
}

# crane with DIR's login and, for a TLS registry, its CA.
crane_for() {
  local dir=$1; shift
  if [ -f "$dir/ca.crt" ]; then
    DOCKER_CONFIG=$dir/docker SSL_CERT_FILE=$dir/ca.crt "$(node_bin)/crane" "$@"
  else
    DOCKER_CONFIG=$dir/docker "$(node_bin)/crane" "$@"
  fi
}

do_start() {
  local dir=$1 user=$2 password=$3 tls=${4:-http} address=${5:-127.0.0.1}
  local bin port pid scheme=http tls_config=""
  bin=$(node_bin)
  mkdir -p "$dir/data" "$dir/docker"
  dir=$(cd "$dir" && pwd)
  printf '%s:%s\n' "$user" "$(bcrypt "$password")" >"$dir/htpasswd"
  port=$(free_port)
  if [ "$tls" = tls ]; then
    make_tls "$dir" "$address"
    scheme=https
    tls_config="  tls: {certificate: $dir/tls.crt, key: $dir/tls.key}"
  fi
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
http:
  addr: $address:$port
  secret: $(openssl rand -hex 16)
$tls_config
auth:
  htpasswd: {realm: pullsecret-injector-test, path: $dir/htpasswd}
EOF
  (cd "$dir" && exec setsid "$bin/registry" serve "$dir/config.yml") </dev/null >"$dir/registry.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/registry.pid"
  local deadline=$((SECONDS + 30))
  # 401 means it is up and asks for credentials.
  until [ "$(curl -s --cacert "$dir/ca.crt" -o /dev/null -w '%{http_code}' "$scheme://$address:$port/v2/")" = 401 ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/registry.log" >&2; die "registry exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "registry did not answer on $address:$port"
    sleep 0.1
  done
  crane_for "$dir" auth login "$address:$port" -u "$user" --password-stdin <<<"$password" \
    >/dev/null 2>&1 || die "crane auth login failed"
  echo "$address:$port"
}

do_stop() {
  local dir=$1 pid
  pid=$(cat "$dir/registry.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$dir/config.yml"; then
    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/registry.pid"
}

# image OUT LAYER [crane mutate flags...]: an OCI image tarball of one layer for this machine's
# platform (linux/amd64 or linux/arm64), made through a scratch in-memory registry on loopback
# (crane mutate works on pushed images only).
do_image() {
  local out=$1 layer=$2; shift 2
  local bin port pid rc=0 arch
  case "$(uname -m)" in
    aarch64 | arm64) arch=arm64 ;;
    *) arch=amd64 ;;
  esac
  bin=$(node_bin)
  port=$(free_port)
  "$bin/crane" registry serve --address "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 20))
  until curl -fs -o /dev/null "http://127.0.0.1:$port/v2/"; do
    kill -0 "$pid" 2>/dev/null || die "crane registry serve exited"
    [ "$SECONDS" -lt "$deadline" ] || { kill "$pid"; die "crane registry serve did not answer"; }
    sleep 0.1
  done
  {
    "$bin/crane" append --oci-empty-base -f "$layer" -t "127.0.0.1:$port/scratch:1" &&
      "$bin/crane" mutate "127.0.0.1:$port/scratch:1" --set-platform "linux/$arch" "$@" \
        -o "$out.tmp" && mv "$out.tmp" "$out"
  } >/dev/null 2>&1 || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$rc" -eq 0 ] || die "could not make the image $out"
}

# push DIR IMAGE-TARBALL REF: pushes with DIR's registry credentials.
do_push() {
  local dir=$1 tarball=$2 ref=$3
  crane_for "$dir" push "$tarball" "$ref" >/dev/null 2>&1 || die "crane push of $ref failed"
}

# The busybox image (relative symlinks: absolute ones made by `busybox --install -s` would point
# at the host's path) and the sandbox image, a static C program that waits for a signal.
do_build_base() {
  local bin=$1 work applet
  work=$(mktemp -d)
  mkdir -p "$work/busybox/bin" "$work/busybox/tmp" "$work/pause"
  cp /bin/busybox "$work/busybox/bin/busybox"
  for applet in sh sleep cat echo ls env true wget id; do
    ln -s busybox "$work/busybox/bin/$applet"
  done
  tar -C "$work/busybox" --owner=0 --group=0 --numeric-owner -cf "$work/busybox.layer" .
  do_image "$bin/busybox.tar" "$work/busybox.layer" --entrypoint /bin/sleep --cmd 3600
  # The node's own copy (pullsecret-injector.local/busybox:1, for `imagePullPolicy: Never`): a
  # label makes it another image than the one pushed to the test registries, since from 1.35 the
  # kubelet refuses a pod an image that was pulled with credentials the pod does not have.
  do_image "$bin/preloaded-busybox.tar" "$work/busybox.layer" --entrypoint /bin/sleep --cmd 3600 \
    --label pullsecret-injector.io/preloaded=true -t pullsecret-injector.local/busybox:1

  cat >"$work/pause.c" <<'CSOURCE'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
CSOURCE
  gcc -static -O2 -o "$work/pause/pause" "$work/pause.c"
  tar -C "$work/pause" --owner=0 --group=0 --numeric-owner -cf "$work/pause.layer" .
  do_image "$bin/pause.tar" "$work/pause.layer" --entrypoint /pause \
    -t pullsecret-injector.local/pause:1
  rm -rf "$work"
}

case "${1:-}" in
  start) do_start "${2:?dir}" "${3:?user}" "${4:?password}" "${5:-http}" "${6:-127.0.0.1}" ;;
  stop) do_stop "${2:?dir}" ;;
  push-busybox) do_push "${2:?dir}" "$(node_bin)/busybox.tar" "${3:?image reference}" ;;
  push) do_push "${2:?dir}" "${3:?image tarball}" "${4:?image reference}" ;;
  image) do_image "${2:?output tarball}" "${3:?layer tarball}" "${@:4}" ;;
  build-base) do_build_base "${2:?bin dir}" ;;
  *)
    sed -n '2,25p' "$0" >&2
    exit 2
    ;;
esac
