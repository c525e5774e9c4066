#!/usr/bin/env bash
# Signs every plugin directory under PLUGINS_DIR (each <dir>/plugin.toml with its component and
# schema) with `comfyhost plugin sign`, writing <dir>/plugin.minisig and <dir>/plugin.pub.
# The key: the secret key file named by COMFYHOST_SIGNING_KEY (a release key from CI's secret
# store), else a key generated for this build in KEY_DIR (default: PLUGINS_DIR/../build-key;
# reused on later runs). Prints the key id; admins trust `<key>.pub`. Then checks each signature
# against the public key (`comfyhost plugin verify`).
# Usage: scripts/sign-plugins.sh PLUGINS_DIR [COMFYHOST_BIN] [KEY_DIR]
set -euo pipefail
dir=${1:?usage: sign-plugins.sh PLUGINS_DIR [COMFYHOST_BIN] [KEY_DIR]}
bin=${2:-comfyhost}
key_dir=${3:-$(dirname "$dir")/build-key}
if [ -n "${COMFYHOST_SIGNING_KEY:-}" ]; then
  key=$COMFYHOST_SIGNING_KEY
  pub=${COMFYHOST_SIGNING_PUBLIC_KEY:-}
else
  mkdir -p "$key_dir"
  key=$key_dir/comfyhost-build.key
  pub=$key_dir/comfyhost-build.pub
  if [ ! -f "$key" ]; then
    "$bin" plugin keygen --out "$key_dir/comfyhost-build"
  fi
  echo "sign-plugins: no COMFYHOST_SIGNING_KEY; signing with the build key $key"
fi
for plugin in "$dir"/*/; do
  [ -f "$plugin/plugin.toml" ] || continue
  "$bin" plugin sign "$plugin" --key "$key"
  if [ -n "$pub" ]; then
    "$bin" plugin verify "$plugin" --public-key "$pub"
  fi
done
