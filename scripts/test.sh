#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, the layer
# rules, and the unit and integration tests (real repositories on disk, the
# real `ember` binary, loop block devices when run as root, PostgreSQL),
# then the real cinder CLI against `ember serve` (files, PostgreSQL, and on
# the throw-away Ceph cluster RBD volumes with both backup targets).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
python3 scripts/check_layers.py
if [ "$(id -u)" = 0 ]; then
  # As root the loop-device test must run, never skip.
  export EMBER_REQUIRE_LOOP=1
fi
cargo test --workspace
# The real cinder CLI against `ember serve` (its venv comes from PyPI):
# project in the URL, project-less URLs, and on PostgreSQL.
scripts/acceptance.sh
PROJECTLESS=1 scripts/acceptance.sh
if command -v initdb >/dev/null || [ -n "${EMBER_REQUIRE_PG:-}" ]; then
  scripts/with-postgres.sh scripts/acceptance.sh
fi
# RBD volumes with Ember's repository and with Cinder's Ceph layout, on the
# throw-away cluster (../shared/ceph/ceph-up.sh; the Rust tests started it).
if command -v ceph-mon >/dev/null || [ -n "${EMBER_REQUIRE_CEPH:-}" ]; then
  eval "$(../shared/ceph/ceph-up.sh)"
  EMBER_VOLUME_DRIVER=rbd scripts/acceptance.sh
  EMBER_VOLUME_DRIVER=rbd EMBER_BACKUP_DRIVER=ceph scripts/acceptance.sh
fi
