#!/usr/bin/env bash
# Builds every first-party plugin (a cdylib crate under plugins/) for wasm32-wasip2 with the
# wasm-release profile and stages each as OUT_DIR/<plugin-dir>/{plugin.toml, <crate>.wasm,
# config.schema.json}: the layout the host's drop-in directory expects (as scripts/run.sh).
# Zero plugins is fine: OUT_DIR is created empty. A manifest naming another .wasm than the one
# the crate builds fails here, at image build time, not when a pod boots.
# Usage: docker/build-plugins.sh OUT_DIR   (CARGO_TARGET_DIR is honoured)
set -euo pipefail
out=${1:?usage: build-plugins.sh OUT_DIR}
cd "$(dirname "$0")/.."
root=$(pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$out"

# "<package> <lib target name> <crate dir>" for each cdylib crate under plugins/.
mapfile -t crates < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
root = os.path.join(sys.argv[1], "plugins") + os.sep
for pkg in meta["packages"]:
    if not pkg["manifest_path"].startswith(root):
        continue
    for t in pkg["targets"]:
        if "cdylib" in t["crate_types"]:
            print(pkg["name"], t["name"].replace("-", "_"), os.path.dirname(pkg["manifest_path"]))
' "$root")

if [ "${#crates[@]}" -eq 0 ]; then
  echo "build-plugins: no plugin crates under plugins/; nothing to bake"
  exit 0
fi

pkgs=()
for line in "${crates[@]}"; do
  read -r pkg _ _ <<<"$line"
  pkgs+=(-p "$pkg")
done
cargo build --locked --profile wasm-release --target wasm32-wasip2 "${pkgs[@]}"

for line in "${crates[@]}"; do
  read -r pkg lib dir <<<"$line"
  [ -f "$dir/plugin.toml" ] || { echo "build-plugins: $dir has no plugin.toml" >&2; exit 1; }
  wasm="$lib.wasm"
  declared=$(sed -n 's/^wasm[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$dir/plugin.toml")
  if [ -n "$declared" ] && [ "$declared" != "$wasm" ]; then
    echo "build-plugins: $dir/plugin.toml names $declared but $pkg builds $wasm" >&2
    exit 1
  fi
  dest="$out/$(basename "$dir")"
  mkdir -p "$dest"
  cp "$dir/plugin.toml" "$dest/"
  if [ -f "$dir/config.schema.json" ]; then cp "$dir/config.schema.json" "$dest/"; fi
  cp "$target_dir/wasm32-wasip2/wasm-release/$wasm" "$dest/$wasm"
  echo "build-plugins: $pkg -> $dest/$wasm"
done
