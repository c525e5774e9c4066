#!/usr/bin/env bash
# The project's test command (README): lint, build the host and every wasm plugin, run all tests.
# Installs what it needs itself: the wasm32-wasip2 target.
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

step "tests"
cargo test --workspace --no-fail-fast
