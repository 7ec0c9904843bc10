#!/usr/bin/env bash
# nftables' software flowtable in the VM (Debian's kernel has nf_flow_table; this
# machine's may not): builds crates/dataplane/tests/flowtable_vm.rs and runs it with
# run.sh. Prints, per round and as medians, keep-alive requests/s and 100 KiB
# transfer throughput through the nft backend's VIP without and with a flowtable
# (interleaved, 7 rounds of 3 s per figure), and the findings of the sync checks
# (conntrack events, timeouts and a takeover of offloaded connections).
#
#   integration/vm/flowtable-bench.sh [extra run.sh arguments, e.g. --filter bench]
#
# Environment: FLOWTABLE_ROUNDS (7), FLOWTABLE_SECS (3, per figure and round),
# VM_TIMEOUT (900). Exit code: run.sh's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
bin="$(cargo test -p dataplane --test flowtable_vm --no-run --message-format=json 2>/dev/null \
    | grep '"name":"flowtable_vm"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    cargo test -p dataplane --test flowtable_vm --no-run >&2
    echo "flowtable-bench: no test executable" >&2
    exit 2
fi
# The rounds and seconds go beside the binary (the guest passes no environment);
# without this file (ipvs-tests.sh) the test runs one short round.
work="$(mktemp -d "${TMPDIR:-/tmp}/flowtable-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/"
echo "${FLOWTABLE_ROUNDS:-7} ${FLOWTABLE_SECS:-3}" > "$work/flowtable-bench.conf"
"$here/run.sh" --timeout "${VM_TIMEOUT:-900}" "$@" "$work/$(basename "$bin")" "$work/flowtable-bench.conf"
