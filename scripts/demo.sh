#!/usr/bin/env bash
# Ember's main job on its embedded default: build ember, generate a sample
# volume, back it up (full, then incremental after a change) into the
# default repository ($EMBER_REPO, else ~/.local/share/ember/repo), restore
# the incremental into a new file, check it byte for byte, verify the
# repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p ember-cli
ember=$PWD/target/release/ember
work=$(mktemp -d "${TMPDIR:-/tmp}/ember-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 256 MiB: a quarter zeros, half random bytes, a quarter text.
python3 - "$work/sample.img" <<'PY'
import os, sys
mib = 1 << 20
with open(sys.argv[1], "wb") as f:
    for i in range(256):
        kind = i % 4
        if kind == 0:
            f.write(b"\0" * mib)
        elif kind == 3:
            f.write(((b"ember sample volume, line %d\n" % i) * mib)[:mib])
        else:
            f.write(os.urandom(mib))
PY

"$ember" backup create "$work/sample.img" --name demo-full
# Change 64 scattered 4 KiB blocks, then back up only what changed.
python3 - "$work/sample.img" <<'PY'
import os, random, sys
rng = random.Random(7)
with open(sys.argv[1], "r+b") as f:
    for _ in range(64):
        f.seek(rng.randrange(0, 256 * 256) * 4096)
        f.write(os.urandom(4096))
PY
incr=$("$ember" backup create "$work/sample.img" --incremental --name demo-incr | tail -n 1)
"$ember" backup list
"$ember" backup show "$incr"
"$ember" backup restore "$incr" "$work/restored.img"
cmp "$work/sample.img" "$work/restored.img"
echo "restored image is identical to the source"
"$ember" repo verify
