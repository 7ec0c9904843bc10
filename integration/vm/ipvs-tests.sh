#!/usr/bin/env bash
# Builds the ipvs crate's VM tests (crates/ipvs/tests/vm.rs) and runs them,
# with the shell tests of guest-tests.sh, in the VM (run.sh). Exit code: run.sh's.
#
#   integration/vm/ipvs-tests.sh [extra run.sh arguments]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

# `cargo test --no-run` prints the test executables as JSON artifacts; keep
# the one of the `vm` test target.
bin="$(cargo test -p ipvs --test vm --no-run --message-format=json 2>/dev/null \
    | grep '"name":"vm"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    # Show the build errors.
    cargo test -p ipvs --test vm --no-run
    echo "ipvs-tests: no test executable for crates/ipvs/tests/vm.rs" >&2
    exit 2
fi
exec "$here/run.sh" "$@" "$bin"
