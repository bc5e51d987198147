#!/usr/bin/env bash
# Set up a fresh Debian host and run the default suite on the newest Debian kernel.
# Extra arguments go to `modharness run`.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
exec target/x86_64-unknown-linux-gnu/release/modharness run "$@"
