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
# First-party plugins (every cdylib crate under plugins/), staged as drop-ins.
bash docker/build-plugins.sh "$PLUGINS_DIR"
# Signed (COMFYHOST_SIGNING_KEY, else a key generated for this build in $DATA_DIR/build-key).
cargo build -q -p comfyhost
bash scripts/sign-plugins.sh "$PLUGINS_DIR" "${CARGO_TARGET_DIR:-target}/debug/comfyhost" "$DATA_DIR/build-key"

# With the embedded simulator, serve the real ComfyUI web frontend (from PyPI) so the page at
# http://127.0.0.1:8188 is the one users know. Skipped for a real ComfyUI (it has its own).
extra=()
case " $* " in
  *" --comfyui-dir"* | *" --attach"*) ;;
  *)
    if [ -z "${COMFYHOST_COMFYUI_DIR:-}${COMFYHOST_ATTACH:-}" ]; then
      # The newest frontend that works with the simulator's default (0.33.0) profile, in its
      # own directory (1.27.10, for the 0.3.64 profile, stays where it is).
      fe_dir=${COMFYHOST_FRONTEND_INSTALL_DIR:-$DATA_DIR/frontend-1.58.1}
      [ -f "$fe_dir/comfyui_frontend_package/static/index.html" ] \
        || python3 -m pip install --quiet --disable-pip-version-check --target "$fe_dir" comfyui-frontend-package==1.58.1 \
        || echo "run.sh: could not install comfyui-frontend-package; the simulator serves a plain page" >&2
      frontend=$fe_dir/comfyui_frontend_package/static
      if [ -n "$frontend" ] && [ -f "$frontend/index.html" ]; then
        extra=(--comfyui-arg --front-end-root --comfyui-arg "$frontend")
      fi
    fi
    ;;
esac
exec cargo run -p comfyhost -- run --data-dir "$DATA_DIR" --plugins-dir "$PLUGINS_DIR" "${extra[@]}" "$@"
