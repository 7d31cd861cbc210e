#!/usr/bin/env bash
# Unpacks Debian's nginx binary into a cache outside the clone (keyed by the package version)
# and prints its path on stdout; progress goes to stderr. The load bench runs it as a second
# baseline: nginx answering the same canned AdmissionReview over the same certificate.
#
# Unpacked, never installed: installing the package would start a system nginx on port 80.
# The package's shared libraries (OpenSSL 3, PCRE2, zlib, libcrypt) are on every Debian 12.
#
# Usage: tests/controlplane/fetch-nginx.sh
set -euo pipefail

cache_root=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}

version=$(apt-cache policy nginx 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "fetch-nginx: refreshing the package lists" >&2
  apt-get update -qq >&2
  version=$(apt-cache policy nginx | awk '/Candidate:/ {print $2}')
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || {
  echo "fetch-nginx: no nginx package in the configured Debian sources" >&2
  exit 1
}

binary="$cache_root/nginx-$version/nginx"
if [ ! -x "$binary" ]; then
  echo "fetch-nginx: unpacking nginx $version" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt's download user cannot write into a root-owned temp dir; fetch as the caller.
  chmod 0777 "$work"
  (cd "$work" && apt-get download "nginx=$version" >&2 2>/dev/null) || {
    apt-get update -qq >&2
    (cd "$work" && apt-get download "nginx=$version" >&2)
  }
  dpkg-deb -x "$work"/nginx_*.deb "$work/root"
  mkdir -p "$(dirname "$binary")"
  install -m 0755 "$work/root/usr/sbin/nginx" "$binary.tmp"
  mv "$binary.tmp" "$binary"
fi
"$binary" -v 2>/dev/null || {
  echo "fetch-nginx: $binary does not run (missing shared libraries?)" >&2
  ldd "$binary" >&2 || true
  exit 1
}
echo "$binary"
