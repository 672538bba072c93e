#!/usr/bin/env python3
"""The standard 1 % mutation of ../shared/bench as an RBD diff stream.

    usage: rbd_mutate_diff.py SIZE_BYTES PERCENT SEED > DIFF
           rbd_mutate_diff.py ... | rbd import-diff - POOL/IMAGE

Writes, in `rbd export-diff` format v1, the 4 KiB blocks that
`make_volume.py mutate FILE PERCENT SEED` writes into a volume of SIZE_BYTES
bytes: the same blocks with the same bytes, so an image imported from the
standard volume and changed with `rbd import-diff` of this stream holds what
the mutated file holds (kernel RBD, `rbd map`, is not available here).
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench"))
import make_volume  # noqa: E402  (BLOCK and the mutation's seeding)
import random  # noqa: E402


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    size, pct, seed = int(argv[1]), argv[2], argv[3]
    block = make_volume.BLOCK
    nblocks = size // block
    # make_volume.mutate's choice of blocks and their bytes, in its order.
    k = int(round(nblocks * float(pct) / 100.0))
    chosen = sorted(random.Random("mutate:%s:%s" % (seed, pct)).sample(range(nblocks), k))
    data_rng = random.Random("mutdata:%s:%s" % (seed, pct))
    out = sys.stdout.buffer
    out.write(b"rbd diff v1\n")
    for b in chosen:
        out.write(b"w" + struct.pack("<QQ", b * block, block) + data_rng.randbytes(block))
    out.write(b"e")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
