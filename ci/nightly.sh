#!/usr/bin/env bash
# The one script both nightly pipelines call (ci/github-nightly.yml, ci/gitlab-nightly.yml).
#
#   ci/nightly.sh shard I/N OUT_DIR [BASELINE_JSON]   run shard I of N of ci/matrix.yaml
#   ci/nightly.sh merge OUT_DIR BASELINE_JSON SHARD_REPORT_JSON...
#                                                     merge the shards, compare with the last
#                                                     night, and keep this night as the next
#                                                     baseline (BASELINE_JSON is replaced)
#
# Exit status: modharness's (1 = something new failed, 3 = infrastructure). A shard's failure
# is reported by the merge too, so pipelines let the merge run whatever the shards returned.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
mode="${1:?usage: ci/nightly.sh shard I/N OUT [BASELINE] | merge OUT BASELINE SHARD_REPORT...}"
shift
MODHARNESS_TEST_TOOLS=0 ci/install-deps.sh
cargo build --release --workspace --quiet
bin=target/x86_64-unknown-linux-gnu/release/modharness
[ -x "$bin" ] || bin=target/release/modharness
case "$mode" in
  shard)
    shard="${1:?shard I/N}" out="${2:?out dir}" baseline="${3:-}"
    args=(matrix --shard "$shard" --out "$out")
    if [ -n "$baseline" ] && [ -f "$baseline" ]; then args+=(--baseline "$baseline"); fi
    exec "$bin" "${args[@]}"
    ;;
  merge)
    out="${1:?out dir}" baseline="${2:?baseline path}"
    shift 2
    args=(report merge --out "$out")
    if [ -f "$baseline" ]; then args+=(--baseline "$baseline"); fi
    status=0
    "$bin" "${args[@]}" "$@" || status=$?
    if [ -f "$out/report.json" ]; then
      mkdir -p "$(dirname "$baseline")"
      cp "$out/report.json" "$baseline"
    fi
    exit "$status"
    ;;
  *)
    echo "ci/nightly.sh: unknown mode '$mode' (shard or merge)" >&2
    exit 2
    ;;
esac
