#!/usr/bin/env bash
# Prints `-p <name>` for every workspace crate that builds a wasm component (crate-type cdylib).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
for pkg in meta["packages"]:
    if any("cdylib" in t["crate_types"] for t in pkg["targets"]):
        print("-p", pkg["name"], end=" ")
'
