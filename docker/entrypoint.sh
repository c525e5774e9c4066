#!/usr/bin/env bash
# Container entrypoint of the comfyhost image: prepares the volume, stages the baked-in
# plugins, then `exec`s comfyhost, which supervises ComfyUI (signals go straight to the host).
#
# Everything it decides comes from the environment, with the image's values as defaults, so it
# runs the same outside Docker (tests/integration/docker_entrypoint.rs does exactly that):
#
#   WORKSPACE=/workspace                  the volume: models, output, input, user data, host state
#   COMFYUI_DIR=/opt/ComfyUI              the ComfyUI checkout (alias: COMFYHOST_COMFYUI_DIR)
#   COMFYUI_PYTHON=/opt/venv/bin/python   its interpreter (alias: COMFYHOST_PYTHON)
#   COMFYHOST_BIN=comfyhost               the host binary
#   COMFYHOST_BAKED_PLUGINS=/opt/comfyhost/plugins   plugins baked into the image
#   PORT=8188, LISTEN_HOST=0.0.0.0        where browsers connect (or COMFYHOST_LISTEN=addr:port)
#   INSTANCE=                             several containers on one volume: per-instance host
#                                         state, output, input and user dirs (models shared)
#   COMFYHOST_SIMULATE=1                  run the built-in ComfyUI simulator (smoke tests)
#   COMFYHOST_ATTACH=http://...           proxy an existing ComfyUI, manage none
#   COMFYHOST_ENTRYPOINT_DRY_RUN=1        prepare the volume, print the command, do not run it
#
# The admin token is never put on the command line: COMFYHOST_ADMIN_TOKEN reaches the host
# through the environment; without it the host generates one at first start and prints it once.
# Other COMFYHOST_* variables (PREFIX, COMFYUI_ARGS, STARTUP_TIMEOUT, ...) also pass through.
set -euo pipefail

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() {
  printf 'entrypoint: error: %s\n' "$*" >&2
  exit "${EXIT_CODE:-1}"
}

BIN=${COMFYHOST_BIN:-comfyhost}
COMFYUI_DIR=${COMFYHOST_COMFYUI_DIR:-${COMFYUI_DIR:-/opt/ComfyUI}}
COMFYUI_PYTHON=${COMFYHOST_PYTHON:-${COMFYUI_PYTHON:-/opt/venv/bin/python}}

# Anything that is not a `run` of the host goes straight through: `gpu` (probing the image's
# ComfyUI environment), `--help`, or another command such as a shell.
case "${1:-}" in
  gpu) COMFYHOST_PYTHON=$COMFYUI_PYTHON COMFYHOST_COMFYUI_DIR=$COMFYUI_DIR exec "$BIN" "$@" ;;
  help | --help | -h | --version | -V) exec "$BIN" "$@" ;;
  run) shift ;;
  "" | -*) ;;
  *) exec "$@" ;;
esac

WORKSPACE=${WORKSPACE:-/workspace}
WORKSPACE=${WORKSPACE%/}
[ -n "$WORKSPACE" ] || WORKSPACE=/
BAKED_PLUGINS=${COMFYHOST_BAKED_PLUGINS:-/opt/comfyhost/plugins}
INSTANCE=${INSTANCE:-}
if [ -n "$INSTANCE" ] && ! [[ "$INSTANCE" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
  die "INSTANCE='$INSTANCE' must be letters, digits, '.', '_' or '-' (it names directories)"
fi
sub=${INSTANCE:+/$INSTANCE}

HOST_HOME="$WORKSPACE/comfyhost"
DATA_DIR=${COMFYHOST_DATA_DIR:-$HOST_HOME${INSTANCE:+/instances/$INSTANCE}}
PLUGINS_DIR=${COMFYHOST_PLUGINS_DIR:-$HOST_HOME/plugins}
BAKED_STATE="$HOST_HOME/baked-plugins"
MODELS_DIR=${MODELS_DIR:-$WORKSPACE/models}
OUTPUT_DIR=${COMFYHOST_OUTPUT_DIR:-$WORKSPACE/output$sub}
INPUT_DIR=${COMFYHOST_INPUT_DIR:-$WORKSPACE/input$sub}
USER_DIR=${COMFYHOST_USER_DIR:-$WORKSPACE/user$sub}
# ComfyUI wipes its temp dir at start and exit: keep it off the shared volume.
TEMP_DIR=${COMFYHOST_TEMP_DIR:-${TMPDIR:-/tmp}/comfyhost-temp${INSTANCE:+-$INSTANCE}}
EXTRA_MODEL_PATHS=${COMFYHOST_EXTRA_MODEL_PATHS:-$HOST_HOME/extra_model_paths.yaml}
LISTEN=${COMFYHOST_LISTEN:-${LISTEN_HOST:-0.0.0.0}:${PORT:-8188}}

# ComfyUI's model folders (folder_paths.py, v0.3.64); created so uploads have a place to go.
MODEL_FOLDERS=(checkpoints configs loras vae text_encoders diffusion_models clip_vision
  style_models embeddings diffusers vae_approx controlnet gligen upscale_models hypernetworks
  photomaker classifiers model_patches audio_encoders)

# ----- the volume must exist and be writable ------------------------------------------------
EXIT_CODE=73 # EX_CANTCREAT
if ! mkdir -p "$WORKSPACE" 2>/dev/null || [ ! -d "$WORKSPACE" ]; then
  die "cannot create the workspace $WORKSPACE (uid $(id -u)); mount a writable volume there or set WORKSPACE"
fi
probe="$WORKSPACE/.comfyhost-write-test.$$"
if ! (: >"$probe") 2>/dev/null; then
  die "the workspace $WORKSPACE is not writable by uid $(id -u); mount it read-write, fix its owner (chown), or run the container as its owner"
fi
rm -f "$probe"

first_start=0
[ -e "$HOST_HOME" ] || first_start=1
for d in "$HOST_HOME" "$DATA_DIR" "$PLUGINS_DIR" "$BAKED_STATE" "$OUTPUT_DIR" "$INPUT_DIR" \
  "$USER_DIR" "$TEMP_DIR" "$MODELS_DIR"; do
  mkdir -p "$d" 2>/dev/null || die "cannot create $d (uid $(id -u))"
done
for f in "${MODEL_FOLDERS[@]}"; do
  mkdir -p "$MODELS_DIR/$f" 2>/dev/null || die "cannot create $MODELS_DIR/$f (uid $(id -u))"
done
unset EXIT_CODE
if [ "$first_start" = 1 ]; then log "first start: created the layout under $WORKSPACE"; fi

# ----- ComfyUI finds its models on the volume ------------------------------------------------
# Written once; an admin may edit it (add folders, other roots) and it is never overwritten.
if [ -z "${COMFYHOST_EXTRA_MODEL_PATHS:-}" ] && [ ! -e "$EXTRA_MODEL_PATHS" ]; then
  tmp="$EXTRA_MODEL_PATHS.tmp.$$"
  {
    echo "# Written by the comfyhost entrypoint on first start; edit freely, it is not rewritten."
    echo "# ComfyUI looks for models under base_path first (is_default)."
    echo "comfyhost_volume:"
    printf "  base_path: '%s'\n" "${MODELS_DIR//\'/\'\'}"
    echo "  is_default: true"
    for f in "${MODEL_FOLDERS[@]}"; do echo "  $f: $f"; done
  } >"$tmp"
  mv "$tmp" "$EXTRA_MODEL_PATHS"
  log "wrote $EXTRA_MODEL_PATHS"
fi

# ----- baked plugins → the volume's drop-in directory ----------------------------------------
# The host reads one plugins directory. A baked plugin is copied there when the volume has never
# seen it, and updated when the image brings a new build and the copy on the volume is still
# the one staged earlier. A plugin an admin changed, replaced or deleted is left alone; its
# record lives in $BAKED_STATE/<name>.sha256 (delete the record to get the baked one back).
dir_hash() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) |
    sha256sum | cut -d' ' -f1
}

stage_plugin() {
  local src=$1 name dest record baked current
  name=$(basename "$src")
  dest="$PLUGINS_DIR/$name"
  record="$BAKED_STATE/$name.sha256"
  baked=$(dir_hash "$src")
  if [ -e "$dest" ]; then
    if [ ! -f "$record" ]; then
      log "plugin $name: keeping the volume's own copy (not staged from the image)"
      return 0
    fi
    current=$(dir_hash "$dest")
    if [ "$current" != "$(cat "$record")" ]; then
      log "plugin $name: keeping the admin-modified copy on the volume"
      return 0
    fi
    [ "$current" != "$baked" ] || return 0
  elif [ -f "$record" ]; then
    log "plugin $name: removed from the volume by an admin; not restored (delete $record to restore)"
    return 0
  fi
  # Dot-directories are ignored by the host's plugin scan, so the swap is atomic for it.
  local tmp="$PLUGINS_DIR/.staging-$name.$$" old="$PLUGINS_DIR/.old-$name.$$"
  rm -rf "$tmp"
  cp -R "$src" "$tmp"
  if [ -e "$dest" ]; then mv -T "$dest" "$old"; fi
  # -T: never move into a directory another instance staged a moment ago.
  if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    rm -rf "$tmp" "$old"
    log "plugin $name: staged concurrently by another instance"
    return 0
  fi
  rm -rf "$old"
  printf '%s\n' "$baked" >"$record"
  log "plugin $name: staged from the image"
}

if [ -d "$BAKED_PLUGINS" ]; then
  for src in "$BAKED_PLUGINS"/*/; do
    [ -f "$src/plugin.toml" ] || continue
    stage_plugin "${src%/}"
  done
fi

# ----- which ComfyUI ---------------------------------------------------------------------------
cmd=("$BIN" run --listen "$LISTEN" --data-dir "$DATA_DIR" --plugins-dir "$PLUGINS_DIR")
if [ -n "${COMFYHOST_ATTACH:-}" ]; then
  log "attach mode: proxying $COMFYHOST_ATTACH"
  unset COMFYHOST_COMFYUI_DIR
elif [ "${COMFYHOST_SIMULATE:-0}" = 1 ]; then
  log "COMFYHOST_SIMULATE=1: running the built-in ComfyUI simulator, not ComfyUI"
  unset COMFYHOST_COMFYUI_DIR
else
  [ -f "$COMFYUI_DIR/main.py" ] ||
    die "ComfyUI is missing: no $COMFYUI_DIR/main.py (set COMFYUI_DIR, or COMFYHOST_SIMULATE=1 for the built-in simulator)"
  [ -x "$COMFYUI_PYTHON" ] || command -v "$COMFYUI_PYTHON" >/dev/null 2>&1 ||
    die "ComfyUI's Python $COMFYUI_PYTHON is not executable (set COMFYUI_PYTHON)"
  cmd+=(--comfyui-dir "$COMFYUI_DIR" --python "$COMFYUI_PYTHON")
fi
cmd+=(--output-dir "$OUTPUT_DIR" --input-dir "$INPUT_DIR" --user-dir "$USER_DIR"
  --temp-dir "$TEMP_DIR" --extra-model-paths "$EXTRA_MODEL_PATHS")
cmd+=("$@")

if [ -n "${COMFYHOST_ADMIN_TOKEN:-}" ]; then
  log "admin token: from COMFYHOST_ADMIN_TOKEN"
elif [ ! -e "$DATA_DIR/admin-token.sha256" ]; then
  log "admin token: none set; the host generates one and prints it once below"
fi

if [ "${COMFYHOST_ENTRYPOINT_DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}" | sed 's/ $//'
  echo
  exit 0
fi
log "exec: ${cmd[*]}"
exec "${cmd[@]}"
