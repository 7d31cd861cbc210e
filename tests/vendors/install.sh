#!/usr/bin/env bash
# Installs the vendors' own clients the vendor plugin tests check against, from PyPI, into a
# virtualenv in a cache outside the clone keyed by their versions, and prints its path:
#   jdcloud-cli (the `jdc` command, with the jdcloud-sdk it pins) and huaweicloudsdkswr (with
#   huaweicloudsdkcore). The stand-ins (standin.py) verify signatures with these packages.
# pip's output goes to a log file, printed only when the install fails.
set -euo pipefail

JDCLOUD_CLI_VERSION=${JDCLOUD_CLI_VERSION:-1.2.12}
HUAWEICLOUD_SWR_VERSION=${HUAWEICLOUD_SWR_VERSION:-3.1.219}

cache_root=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}
venv=$cache_root/vendor-clients-jdcloud-cli-$JDCLOUD_CLI_VERSION-huaweicloudsdkswr-$HUAWEICLOUD_SWR_VERSION
if [ -x "$venv/bin/jdc" ] && [ -e "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache_root"
exec 9>"$cache_root/vendor-clients.lock"
flock 9
if [ -x "$venv/bin/jdc" ] && [ -e "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "[vendors] installing jdcloud-cli $JDCLOUD_CLI_VERSION and huaweicloudsdkswr $HUAWEICLOUD_SWR_VERSION from PyPI (about a minute)" >&2
rm -rf "$venv"
if ! python3 -m venv "$venv" >>"$log" 2>&1; then
  # Debian's python3 needs its venv package for this.
  apt-get install -y -qq python3-venv >>"$log" 2>&1 || { apt-get update -qq >>"$log" 2>&1 && apt-get install -y -qq python3-venv >>"$log" 2>&1; }
  rm -rf "$venv"
  python3 -m venv "$venv" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
fi
if ! "$venv/bin/pip" install --disable-pip-version-check --no-input \
    "jdcloud-cli==$JDCLOUD_CLI_VERSION" "huaweicloudsdkswr==$HUAWEICLOUD_SWR_VERSION" >>"$log" 2>&1; then
  echo "[vendors] pip install failed; its last lines:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
touch "$venv/.complete"
echo "$venv"
