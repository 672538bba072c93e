#!/usr/bin/env bash
# Ember on RBD against the rbd CLI, on the standard volume imported as an RBD
# image, in one run; prints one markdown table.
#
#   usage: bench/rbd.sh [SIZE_MIB]        (default 4096: vol-4096M.img)
#
# Steps (each timed step runs once, under /usr/bin/time; CPU = user + system
# of the command and its children, not of the Ceph daemons):
#   - `rbd import` of EMBER_VOLS/vol-<SIZE>M.img as POOL/<image> (not timed);
#   - full backup: Ember's chunked repository (`ember backup create
#     rbd:POOL/IMAGE`, --repo a directory in BENCH_WORK) and the Ceph driver
#     (crates/ember-rbd-backup/examples/rbd-backup.rs, into BACKUP_POOL),
#     against `rbd snap create` + `rbd export IMAGE@snap FILE`;
#   - restore of those full backups into new images, against `rbd import
#     FILE` (into the backup pool: the CLI's base image for the incremental);
#     each restored image is checked against the volume's sha256; for
#     context also against `rbd import` of FILE out of the page cache and
#     `rbd cp` of the CLI's base image into POOL;
#   - the standard 1 % change of ../shared/bench (`make_volume.py mutate`, 1 %
#     of the 4 KiB blocks, seed 7), written with `rbd import-diff` of the
#     same blocks (bench/rbd_mutate_diff.py; kernel RBD is not used);
#   - incremental backup by both paths, against what Cinder runs: `rbd snap
#     create` + `rbd export-diff --from-snap S1 IMAGE@S2 - | rbd import-diff
#     - BASE` + `rbd snap rm S1`.
# Every image, snapshot and file made here is removed at the end (also on
# failure or Ctrl-C). The development cluster frees the space of removed
# snapshots slowly (its `osd_snap_trim_sleep_hdd` is 5 s): a run started
# right after another can fill its 20 GiB and stall; start it afresh first
# (`../shared/ceph/ceph-down.sh DIR --wipe`, then `ceph-up.sh`).
#
# Environment:
#   EMBER_VOLS    where the standard volumes live (default /var/tmp/ember-vols);
#                 missing: bench/run.sh SIZE creates it
#   BENCH_WORK    scratch root (default ${TMPDIR:-/tmp}/ember-rbd-bench); needs
#                 about the volume's size (the repository and the export file)
#   EMBER_BIN, RBD_BACKUP_BIN   binaries to use (skip the cargo build)
#   POOL, BACKUP_POOL           default volumes and backups
#   CEPH_CONF     the cluster; unset: ../shared/ceph/ceph-up.sh starts or
#                 reuses the development cluster
# Exit status: 0, or 1 when a step failed or a restore did not match.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$ROOT/../shared" && pwd)
SIZE=${1:-4096}
case $SIZE in '' | *[!0-9]*) echo "usage: $0 [SIZE_MIB]  (got '$SIZE')" >&2; exit 2 ;; esac
VOLUME=${EMBER_VOLS:-/var/tmp/ember-vols}/vol-${SIZE}M.img
[ -f "$VOLUME" ] || { echo "$VOLUME is missing: bench/run.sh $SIZE creates it" >&2; exit 2; }
POOL=${POOL:-volumes}
BACKUP_POOL=${BACKUP_POOL:-backups}
log() { printf '[%s] rbd.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -z "${CEPH_CONF:-}" ]; then
  eval "$("$SHARED/ceph/ceph-up.sh")"
fi
export CEPH_CONF

if [ -z "${EMBER_BIN:-}" ] || [ -z "${RBD_BACKUP_BIN:-}" ]; then
  log "building ember and the driver's example (release)"
  (cd "$ROOT" && cargo build --release -q -p ember-cli &&
    cargo build --release -q -p ember-rbd-backup --example rbd-backup)
fi
EMBER=${EMBER_BIN:-$ROOT/target/release/ember}
DRIVER=${RBD_BACKUP_BIN:-$ROOT/target/release/examples/rbd-backup}
export EMBER_RBD_BACKUP_POOL=$BACKUP_POOL

TAG=emberbench-$$
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/ember-rbd-bench}/$TAG
REPO=$WORK/repo
EXPORT=$WORK/export.img
CLI_BASE=$TAG.cli  # the CLI's backup image, in BACKUP_POOL
mkdir -p "$WORK/logs"

# remove_images [PATTERN]: removes the images of both pools whose names
# contain PATTERN (default: TAG), snapshots first.
remove_images() {
  local pool image
  for pool in "$POOL" "$BACKUP_POOL"; do
    for image in $(rbd ls "$pool" 2>/dev/null | grep -F "${1:-$TAG}" || true); do
      rbd snap purge --no-progress "$pool/$image" >/dev/null 2>&1 || true
      rbd rm --no-progress "$pool/$image" >/dev/null 2>&1 || true
    done
  done
}
trap 'remove_images; rm -rf "$WORK"' EXIT

# timed NAME CMD...: runs CMD, keeps its output in logs/NAME.*, appends
# "NAME wall cpu" to the times.
TIMES=$WORK/times
timed() {
  local name=$1
  shift
  if ! /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$@" >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err"; then
    log "$name failed:"
    tail -5 "$WORK/logs/$name.err" >&2
    exit 1
  fi
  awk -v n="$name" '{ printf "%s %.2f %.2f\n", n, $1, $2 + $3 }' "$WORK/time" >>"$TIMES"
  log "$name: $(tail -1 "$TIMES" | cut -d' ' -f2-) (wall, CPU s)"
}

# check IMAGE_SPEC: its content must be the volume's.
WANT=$(sha256sum "$VOLUME" | cut -d' ' -f1)
check() {
  local got
  got=$(rbd export --no-progress "$1" - | sha256sum | cut -d' ' -f1)
  if [ "$got" != "$WANT" ]; then
    log "MISMATCH: $1 has sha256 $got, the volume $WANT"
    exit 1
  fi
}

# source NAME: imports the volume as POOL/NAME (not timed).
source_image() {
  log "importing $VOLUME as $POOL/$1"
  rbd import --no-progress "$VOLUME" "$POOL/$1" >/dev/null
}

# mutate NAME: the standard 1 % change, written into POOL/NAME.
mutate() {
  python3 "$ROOT/bench/rbd_mutate_diff.py" $((SIZE << 20)) 1 7 |
    rbd import-diff --no-progress - "$POOL/$1"
}

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
# One source image per path (the driver, like Cinder, removes every older
# backup snapshot from its source, Ember's included), one after the other
# so that the cluster holds at most three copies of the volume.

# ------------------------------------------- Ember's repository and the CLI
IMAGE=$TAG.ember
source_image "$IMAGE"
timed ember-full "$EMBER" --repo "$REPO" backup create "rbd:$POOL/$IMAGE" --json -q
EMBER_FULL=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["id"])' <"$WORK/logs/ember-full.out")
timed cli-full bash -c "rbd snap create --no-progress $POOL/$IMAGE@cli.1 && rbd export --no-progress $POOL/$IMAGE@cli.1 $EXPORT"
timed ember-restore "$EMBER" --repo "$REPO" backup restore "$EMBER_FULL" "rbd:$POOL/$TAG.restored" -q
check "$POOL/$TAG.restored"
rbd rm --no-progress "$POOL/$TAG.restored"
timed cli-restore rbd import --no-progress "$EXPORT" "$BACKUP_POOL/$CLI_BASE"
check "$BACKUP_POOL/$CLI_BASE"
# Context for the restores: the same import again with the export file out
# of the page cache (Ember's packs are not in it either), and the CLI's own
# copy of an image from one pool to the other (what the driver's restore
# does). The cluster (20 GiB on the development setup) holds no more
# copies at once than before.
rbd rm --no-progress "$BACKUP_POOL/$CLI_BASE"
sync "$EXPORT"
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$EXPORT"
timed cli-restore-cold rbd import --no-progress "$EXPORT" "$BACKUP_POOL/$CLI_BASE"
rm -f "$EXPORT"
timed cli-copy rbd cp --no-progress "$BACKUP_POOL/$CLI_BASE" "$POOL/$TAG.copied"
rbd rm --no-progress "$POOL/$TAG.copied"
rbd snap create --no-progress "$BACKUP_POOL/$CLI_BASE@cli.1"
mutate "$IMAGE"
timed ember-incr "$EMBER" --repo "$REPO" backup create "rbd:$POOL/$IMAGE" --incremental --json -q
timed cli-incr bash -o pipefail -c "rbd snap create --no-progress $POOL/$IMAGE@cli.2 &&
  rbd export-diff --no-progress --from-snap cli.1 $POOL/$IMAGE@cli.2 - | rbd import-diff --no-progress - $BACKUP_POOL/$CLI_BASE &&
  rbd snap rm --no-progress $POOL/$IMAGE@cli.1"
remove_images
rm -rf "$REPO"

# ------------------------------------------- the Ceph driver (ember-rbd-backup)
IMAGE=$TAG.driver
VOLUME_ID=$TAG
DRIVER_FULL=$(cat /proc/sys/kernel/random/uuid)
source_image "$IMAGE"
timed driver-full "$DRIVER" backup "$POOL/$IMAGE" "$VOLUME_ID" "$DRIVER_FULL"
timed driver-restore "$DRIVER" restore "$VOLUME_ID" "$DRIVER_FULL" "$POOL/$TAG.restored"
check "$POOL/$TAG.restored"
rbd rm --no-progress "$POOL/$TAG.restored"
mutate "$IMAGE"
timed driver-incr "$DRIVER" backup "$POOL/$IMAGE" "$VOLUME_ID" "$(cat /proc/sys/kernel/random/uuid)" --incremental
grep -q Incremental "$WORK/logs/driver-incr.out" || { log "the driver's backup was not incremental"; exit 1; }
remove_images

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
field() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$TIMES"; }
{
  echo
  echo "### RBD, ${SIZE} MiB image, $(date -u +%Y-%m-%d) (\`bench/rbd.sh $SIZE\`)"
  echo
  printf 'Ember %s; %s CPUs, 1-min load %s before and %s after the run; %s.\n' \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(nproc)" \
    "$LOAD_BEFORE" "$(cut -d' ' -f1 /proc/loadavg)" "$(rbd --version | cut -d' ' -f1-3)"
  echo
  echo "| op | path | wall s | CPU s | rbd CLI | CLI wall s | CLI CPU s | wall ratio | CPU ratio | target |"
  echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"
  for op in full restore incr; do
    case $op in
      full) cli="snap create + export" target=1.2 ;;
      restore) cli="import" target=1.2 ;;
      incr) cli="snap create + export-diff \\| import-diff + snap rm" target=1.5 ;;
    esac
    cw=$(field "cli-$op" 2) cc=$(field "cli-$op" 3)
    for path in ember driver; do
      w=$(field "$path-$op" 2) c=$(field "$path-$op" 3)
      name=$([ "$path" = ember ] && echo "Ember repository" || echo "Ceph driver")
      echo "| $op | $name | $w | $c | $cli | $cw | $cc | $(ratio "$w" "$cw") | $(ratio "$c" "$cc") | ≤ $target |"
    done
  done
  echo
  echo "Restores against two more baselines, for context: \`rbd import\` of the"
  echo "export file once it is out of the page cache, and \`rbd cp\` of the CLI's"
  echo "backup image from $BACKUP_POOL into $POOL."
  echo
  echo "| path | wall s | baseline | baseline wall s | wall ratio |"
  echo "|---|---:|---|---:|---:|"
  cold=$(field cli-restore-cold 2) copy=$(field cli-copy 2)
  w=$(field ember-restore 2)
  echo "| Ember repository | $w | import, file not cached | $cold | $(ratio "$w" "$cold") |"
  w=$(field driver-restore 2)
  echo "| Ceph driver | $w | rbd cp between the pools | $copy | $(ratio "$w" "$copy") |"
  echo
  echo "Every restored image matched the volume's sha256."
}
