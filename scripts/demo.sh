#!/usr/bin/env bash
# The suite's main job: a two-node cluster in network namespaces, built from
# cluster.toml.example (or the file given), with traffic and a failover drill.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [[ $(id -u) -ne 0 ]]; then
    echo "demo: needs root (network namespaces)" >&2
    exit 1
fi
cargo build --workspace --quiet
target/debug/lab sweep >/dev/null
export RUST_LIB_BACKTRACE=0
exec target/debug/demo "${1:-cluster.toml.example}"
