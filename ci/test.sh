#!/usr/bin/env bash
# The whole test suite: unit tests, then end-to-end tests that boot the newest Debian kernel
# under QEMU (the first run fetches it into the cache, ~120 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --quiet
cargo test --workspace -- --test-threads=2
