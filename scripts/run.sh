#!/usr/bin/env bash
# The project's run command (README): build the first-party plugins, stage them in the host's
# drop-in plugins directory, and run the host. With no ComfyUI configured the host runs its
# embedded ComfyUI simulator; pass --comfyui-dir/--python or --attach (or the COMFYHOST_* env
# variables) for a real one. Extra arguments go to `comfyhost run`.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
DATA_DIR=${COMFYHOST_DATA_DIR:-.comfyhost}
PLUGINS_DIR=${COMFYHOST_PLUGINS_DIR:-$DATA_DIR/plugins}
if [ -d plugins ] && ls plugins/*/plugin.toml >/dev/null 2>&1; then
  pkgs=""
  for m in plugins/*/plugin.toml; do pkgs="$pkgs -p $(basename "$(dirname "$m")")"; done
  # shellcheck disable=SC2086
  cargo build --profile wasm-release --target wasm32-wasip2 $pkgs
  for m in plugins/*/plugin.toml; do
    dir=$(dirname "$m"); name=$(basename "$dir"); crate=${name//-/_}
    mkdir -p "$PLUGINS_DIR/$name"
    cp "$m" "$PLUGINS_DIR/$name/plugin.toml"
    [ -f "$dir/config.schema.json" ] && cp "$dir/config.schema.json" "$PLUGINS_DIR/$name/"
    cp "target/wasm32-wasip2/wasm-release/$crate.wasm" "$PLUGINS_DIR/$name/$crate.wasm"
  done
fi
exec cargo run -p comfyhost -- run --data-dir "$DATA_DIR" --plugins-dir "$PLUGINS_DIR" "$@"
