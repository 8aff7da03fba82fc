#!/bin/sh
# Builds the component and puts it beside its manifest in dist/:
#   ./build.sh [cargo options, e.g. --offline]
# then: cnode plugin install dist
set -eu
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2 "$@"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p dist
cp "$target/wasm32-wasip2/release/{{CRATE_LIB}}.wasm" dist/{{DIR}}.wasm
cp plugin.toml dist/plugin.toml
echo "built dist/{{DIR}}.wasm"
