#!/usr/bin/env bash
# Builds the VM tests of IPVS -- the ipvs crate's client (crates/ipvs/tests/vm.rs),
# the dataplane's IPVS backend (crates/dataplane/tests/ipvs_vm.rs), IPVS lc/wlc
# under lc_bench's skewed load (crates/dataplane/tests/least_conn_vm.rs), IPVS
# persistence (crates/dataplane/tests/persistence_vm.rs), the real
# daemons on IPVS (lbd/tests/vm_daemons.rs, with lbd, vrrpd and vrrpctl), and
# nftables' flowtable (crates/dataplane/tests/flowtable_vm.rs) -- and
# runs them, with the shell tests of guest-tests.sh, in the VM (run.sh).
# Exit code: run.sh's.
#
#   integration/vm/ipvs-tests.sh [extra run.sh arguments]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

# `cargo test --no-run` prints the test executables as JSON artifacts; keep
# the one of the named test target.
test_binary() { # PACKAGE TARGET
    local bin
    bin="$(cargo test -p "$1" --test "$2" --no-run --message-format=json 2>/dev/null \
        | grep "\"name\":\"$2\"" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)"
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        # Show the build errors.
        cargo test -p "$1" --test "$2" --no-run >&2
        echo "ipvs-tests: no test executable for $1 --test $2" >&2
        exit 2
    fi
    echo "$bin"
}
# The executable of a package's binary, built as `cargo build` does.
program() { # PACKAGE BIN
    local bin
    bin="$(cargo build -p "$1" --bin "$2" --message-format=json 2>/dev/null \
        | grep "\"name\":\"$2\"" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)"
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        cargo build -p "$1" --bin "$2" >&2
        echo "ipvs-tests: no executable for $1 --bin $2" >&2
        exit 2
    fi
    echo "$bin"
}
client="$(test_binary ipvs vm)"
backend="$(test_binary dataplane ipvs_vm)"
least_conn="$(test_binary dataplane least_conn_vm)"
persistence="$(test_binary dataplane persistence_vm)"
daemons="$(test_binary lbd vm_daemons)"
# nftables' flowtable (crates/dataplane/tests/flowtable_vm.rs): the sync checks and
# one short round of the benchmark (integration/vm/flowtable-bench.sh runs it long).
flowtable="$(test_binary dataplane flowtable_vm)"
# The daemons run from the guest's /opt/lbsuite/daemons (LBSUITE_DAEMON_DIR).
exec "$here/run.sh" --timeout "${VM_TIMEOUT:-1500}" \
    --daemon "$(program lbd lbd)" --daemon "$(program vrrpd vrrpd)" \
    --daemon "$(program vrrpctl vrrpctl)" "$@" "$client" "$backend" "$least_conn" "$persistence" "$daemons" "$flowtable"
