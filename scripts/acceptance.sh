#!/usr/bin/env bash
# Runs the real `cinder` CLI acceptance sequence (../shared/clients/
# cinder_acceptance.sh, with its byte-for-byte data check) against a fresh
# `ember serve` on a free local port, then stops the service.
#   usage: scripts/acceptance.sh [EMBER_BINARY]   (default: a debug build)
# Environment: EMBER_DATABASE (e.g. postgres://…) to run the service on
# PostgreSQL instead of the embedded SQLite; PROJECTLESS=1 for /v3 URLs
# without the project id; EMBER_VOLUME_DRIVER=rbd for RBD volumes and
# EMBER_BACKUP_DRIVER=ceph for Cinder's Ceph backup layout, on the cluster
# of $CEPH_CONF (pools `volumes` and `backups`, as ../shared/ceph/ceph-up.sh
# makes them). RBD volumes have no file path, so their data is not checked
# here (the Rust tests of ember-service compare it with `rbd export`).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=$(cd ../shared && pwd)

if [ $# -ge 1 ]; then
  ember=$(readlink -f "$1")
else
  cargo build -q -p ember-cli
  ember=$PWD/target/debug/ember
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ember-acceptance.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
config=$work/ember.toml
{
  echo "listen = \"127.0.0.1:$port\""
  echo "data_dir = \"$work/data\""
  if [ -n "${EMBER_DATABASE:-}" ]; then echo "database = \"$EMBER_DATABASE\""; fi
  if [ "${EMBER_VOLUME_DRIVER:-file}" = rbd ]; then
    echo "volume_driver = \"rbd\""
    echo "rbd_ceph_conf = \"${CEPH_CONF:?EMBER_VOLUME_DRIVER=rbd needs CEPH_CONF}\""
  fi
  if [ "${EMBER_BACKUP_DRIVER:-posix}" = ceph ]; then
    echo "backup_driver = \"ceph\""
    echo "backup_ceph_conf = \"${CEPH_CONF:?EMBER_BACKUP_DRIVER=ceph needs CEPH_CONF}\""
  fi
} > "$config"

"$ember" serve --config "$config" > "$work/serve.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/v3" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done

if [ "${EMBER_VOLUME_DRIVER:-file}" = file ]; then
  export EMBER_VOLUME_PATH_CMD="$ember volume path --config $config {id}"
fi
status=0
"$SHARED/clients/cinder_acceptance.sh" "http://127.0.0.1:$port" 0123456789abcdef0123456789abcdef || status=$?
# The log went to a file: plain text, no terminal colour codes.
if grep -q $'\033' "$work/serve.log"; then
  echo "the service's log file holds terminal escape codes" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- ember serve log ---" >&2
  tail -n 50 "$work/serve.log" >&2
fi
exit "$status"
