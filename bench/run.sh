#!/usr/bin/env bash
# Ember against its peers on one standard volume, in one peer_bench.sh run.
#
#   usage: bench/run.sh [SIZE_MIB]        (default 4096; 1024 and 4096 are the
#                                          standard volumes of ../shared/bench)
#
# Steps: build ember (release) unless EMBER_BIN is set; create the standard
# volume (pattern z25,r50,t25, seed 42) if it is missing; install the peers
# (../shared/bench/setup_peers.sh) only if one of the selected ones is
# missing; run ../shared/bench/peer_bench.sh with Ember's command templates,
# CACHE=warm and a fresh results TSV; print one combined markdown table of
# this run's rows (bench/report.py), ready to paste into bench/RESULTS.md.
#
# Environment:
#   TOOLS           tools to run (default: all peers plus ember:
#                   "cinder-zlib cinder-none restic borg-lz4 borg-zstd benji ember")
#   EMBER_BIN       ember binary to use (skips the cargo build)
#   EMBER_VOLS      where the standard volumes live (default /var/tmp/ember-vols)
#   BENCH_WORK      scratch root (default ${TMPDIR:-/tmp}/ember-bench); the work
#                   directory is BENCH_WORK/vol-<SIZE>M and needs ~3x the volume
#   CACHE           warm (default) | cold (root; passed to peer_bench.sh)
#   PEERS_VENV_DIR, MUTATE_PCT, MUTATE_SEED, KEEP, CINDER_ARGS: passed through
#                   to peer_bench.sh (see its header)
# Exit status: that of peer_bench.sh (1 if a tool failed or a restore did not
# match); the table is printed in every case.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$ROOT/../shared" && pwd)
SB=$SHARED/bench

SIZE=${1:-4096}
case $SIZE in ''|*[!0-9]*) echo "usage: $0 [SIZE_MIB]  (got '$SIZE')" >&2; exit 2 ;; esac
export TOOLS=${TOOLS:-cinder-zlib cinder-none restic borg-lz4 borg-zstd benji ember}
VOLS=${EMBER_VOLS:-/var/tmp/ember-vols}
VOLUME=$VOLS/vol-${SIZE}M.img
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/ember-bench}/vol-${SIZE}M
VENVS=${PEERS_VENV_DIR:-$HOME/.cache/ember-peers}

log() { printf '[%s] run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_tool_prefix() { case " $TOOLS" in *" $1"*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- 1. ember
EMBER_BACKUP_CMD="" EMBER_INCR_CMD="" EMBER_RESTORE_CMD=""
if has_tool ember; then
  if [ -n "${EMBER_BIN:-}" ]; then
    EMBER=$(readlink -f "$EMBER_BIN")
  else
    log "building ember (cargo build --release -p ember-cli)"
    (cd "$ROOT" && cargo build --release -p ember-cli)
    EMBER=$ROOT/target/release/ember
  fi
  [ -x "$EMBER" ] || { echo "ember binary not executable: $EMBER" >&2; exit 2; }
  E=$(printf '%q' "$EMBER")
  EMBER_BACKUP_CMD="$E --repo {repo} backup create {vol} --json -q"
  EMBER_INCR_CMD="$E --repo {repo} backup create {vol} --incremental {full} --json -q"
  EMBER_RESTORE_CMD="$E --repo {repo} backup restore {backup} {out} -q"
  EMBER_VERSION="$("$EMBER" --version 2>/dev/null || echo ember)"
  EMBER_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [ -z "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || EMBER_COMMIT="$EMBER_COMMIT+dirty"
  [ -z "${EMBER_BIN:-}" ] || EMBER_COMMIT="$EMBER_COMMIT (EMBER_BIN=$EMBER)"
  export EMBER_BACKUP_CMD EMBER_INCR_CMD EMBER_RESTORE_CMD
  log "ember: $EMBER ($EMBER_VERSION, $EMBER_COMMIT)"
else
  # never let templates from the caller's environment sneak in
  unset EMBER_BACKUP_CMD EMBER_INCR_CMD EMBER_RESTORE_CMD EMBER_INIT_CMD EMBER_SERVICE_PID
  EMBER_VERSION="" EMBER_COMMIT=""
fi

# ---------------------------------------------------------------- 2. volume
if [ ! -f "$VOLUME" ]; then
  log "creating $VOLUME (make_volume.py $SIZE z25,r50,t25 42)"
  mkdir -p "$VOLS"
  python3 "$SB/make_volume.py" "$SIZE" z25,r50,t25 42 "$VOLUME.tmp.$$"
  mv "$VOLUME.tmp.$$" "$VOLUME"
  case $SIZE in  # the README's sums (CPython 3.11); a mismatch is only a warning
    1024) want=8edb07bccee89e24d3c87f5414e34506735c2b8bbd3be97f766206f070aa6194 ;;
    4096) want=e447185389ecb4ebd613be229e7ab8f7db3b31a031d65554668af072c63cd299 ;;
    *) want="" ;;
  esac
  if [ -n "$want" ]; then
    got=$(sha256sum "$VOLUME" | cut -d' ' -f1)
    [ "$got" = "$want" ] || log "WARNING: $VOLUME sha256 $got differs from the README's $want"
  fi
fi
[ "$(stat -c %s "$VOLUME")" = $((SIZE * 1048576)) ] ||
  { echo "$VOLUME is not $SIZE MiB: remove it to regenerate" >&2; exit 2; }

# ---------------------------------------------------------------- 3. peers
need_setup=""
[ -x /usr/bin/time ] || need_setup="/usr/bin/time"
has_tool restic && ! command -v restic >/dev/null && need_setup="$need_setup restic"
has_tool_prefix borg- && ! command -v borg >/dev/null && need_setup="$need_setup borg"
has_tool_prefix cinder- && ! "$VENVS/cinder/bin/python" -c 'import cinder.backup.drivers.posix' 2>/dev/null &&
  need_setup="$need_setup cinder"
has_tool benji && [ ! -x "$VENVS/benji/bin/benji" ] && need_setup="$need_setup benji"
if [ -n "$need_setup" ]; then
  log "peers missing:$need_setup -> running setup_peers.sh"
  "$SB/setup_peers.sh"
fi

# ---------------------------------------------------------------- 4. bench
mkdir -p "$WORK"
STAMP=$(date +%Y%m%d-%H%M%S)
export RESULTS=$WORK/results-$STAMP.tsv
export CACHE=${CACHE:-warm}
rm -f "$RESULTS"
log "volume $VOLUME, work $WORK, tools: $TOOLS, results $RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
rc=0
"$SB/peer_bench.sh" "$VOLUME" "$WORK" || rc=$?

# ---------------------------------------------------------------- 5. report
REPORT=$WORK/report-$STAMP.md
if [ -s "$RESULTS" ]; then
  {
    echo
    echo "### ${SIZE} MiB volume, $(date -u +%Y-%m-%d) (\`bench/run.sh $SIZE\`, CACHE=$CACHE)"
    echo
    printf '%s%s CPUs, 1-min load %s before and %s after the run; tools: %s.\n' \
      "${EMBER_COMMIT:+Ember $EMBER_COMMIT; }" "$(nproc)" "$LOAD_BEFORE" \
      "$(cut -d' ' -f1 /proc/loadavg)" "$TOOLS"
    echo
    python3 "$ROOT/bench/report.py" "$RESULTS" "$SIZE"
  } | tee "$REPORT"
  log "markdown saved to $REPORT (TSV: $RESULTS)"
else
  log "no results in $RESULTS"
fi
[ "$rc" = 0 ] || log "peer_bench.sh exited with $rc (a tool failed or a restore did not match; logs in $WORK/logs)"
exit "$rc"
