#!/usr/bin/env python3
"""Fails if a workspace crate depends on a crate of its own layer or above.

Layers, bottom-up (docs/architecture.md): types; the Ceph client bindings;
then format, store, volume and meta (side by side, independent of each
other); repo; engine and the RBD backup driver; service; api; and the
binary (cli).
"""
import json
import subprocess
import sys

LAYER = {
    "ember-types": 0,
    "ember-ceph": 1,
    "ember-format": 2,
    "ember-store": 2,
    "ember-volume": 2,
    "ember-meta": 2,
    "ember-repo": 3,
    "ember-engine": 4,
    "ember-rbd-backup": 4,
    "ember-service": 5,
    "ember-api": 6,
    "ember-cli": 7,
}

meta = json.loads(
    subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"])
)
errors = []
for package in meta["packages"]:
    name = package["name"]
    if name not in LAYER:
        errors.append(f"{name}: not assigned to a layer in scripts/check_layers.py")
        continue
    for dep in package["dependencies"]:
        if dep["kind"] == "dev":
            continue
        target = dep["name"]
        if target in LAYER and LAYER[target] >= LAYER[name]:
            errors.append(f"{name} (layer {LAYER[name]}) must not depend on {target} (layer {LAYER[target]})")
for error in errors:
    print(f"layer check: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
