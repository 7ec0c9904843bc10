#!/bin/sh
# Guest test script (busybox sh), run by /init inside the VM. Prints one
# `TEST <name> PASS|FAIL [detail]` line per test and `VERDICT PASS|FAIL` last.
#
# Contract with the Rust VM tests (crates/*/tests/vm*.rs, marked
# #[ignore = "needs IPVS: run in the VM"]): each binary in /opt/lbsuite/bin is
# run with `--ignored --test-threads=1` inside network namespace `lb`, where
#   rs0   (dummy) 198.18.1.1/24  -- real servers 198.18.1.0/24 are routable
#   sync0 (dummy) 198.18.2.1/24  -- an interface for the IPVS sync daemon
# and nothing else is routed (198.19.0.0/16 has no route: IPVS says EINVAL).
# LBSUITE_VM=1 is set for them, and LBSUITE_DAEMON_DIR=/opt/lbsuite/daemons:
# the programs (lbd, vrrpd, vrrpctl) given to run.sh with --daemon. What a
# test appends to the file $LBSUITE_VM_NOTES (findings worth a line in the host
# log; libtest swallows a passing test's output) is shown after its results.

# Always the real iproute2: busybox sh would run its own `ip` applet.
IP=/usr/sbin/ip
fails=0
pass() { echo "TEST $1 PASS"; }
fail() {
    echo "TEST $1 FAIL $2"
    fails=$((fails + 1))
}
# check NAME COMMAND...: PASS when the command succeeds.
check() {
    name=$1
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "$(echo "$out" | tr '\n' ' ' | tail -c 300)"
    fi
}
in_lb() { $IP netns exec lb "$@"; }

check kernel_has_ipvs test -e /proc/net/ip_vs

# The namespace of the IPVS tests.
setup_lb() {
    $IP netns add lb &&
        $IP -n lb link set lo up &&
        $IP -n lb link add rs0 type dummy &&
        $IP -n lb addr add 198.18.1.1/24 dev rs0 &&
        $IP -n lb link set rs0 up &&
        $IP -n lb link add sync0 type dummy &&
        $IP -n lb addr add 198.18.2.1/24 dev sync0 &&
        $IP -n lb link set sync0 up
}
check netns_lb_setup setup_lb

# ipvsadm alone, as a baseline for the kernel and the tools.
ipvsadm_roundtrip() {
    in_lb ipvsadm -A -t 198.18.0.200:80 -s wlc &&
        in_lb ipvsadm -a -t 198.18.0.200:80 -r 198.18.1.20:80 -m -w 3 &&
        in_lb ipvsadm -Ln | grep -q '198.18.1.20:80 *Masq *3' &&
        in_lb ipvsadm -D -t 198.18.0.200:80 &&
        ! in_lb ipvsadm -Ln | grep -q 198.18.0.200
}
check ipvsadm_roundtrip ipvsadm_roundtrip

# IPVS tables are per namespace: the root namespace sees none of lb's.
ipvs_per_netns() {
    in_lb ipvsadm -A -t 198.18.0.201:80 -s rr &&
        ! ipvsadm -Ln | grep -q 198.18.0.201 &&
        in_lb ipvsadm -D -t 198.18.0.201:80
}
check ipvs_per_netns ipvs_per_netns

# nftables NAT works in this kernel (the nft backend's needs).
nft_nat() {
    in_lb nft -f - <<'NFT' && in_lb nft list table ip lbsuite_vm | grep -q 'dnat to'
table ip lbsuite_vm {
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr 198.18.0.210 tcp dport 80 dnat to 198.18.1.30:8080
    }
}
NFT
    rc=$?
    in_lb nft delete table ip lbsuite_vm 2>/dev/null
    return $rc
}
check nft_nat nft_nat

# Rust test binaries; with run.sh --filter, only the tests whose names contain a
# word of /opt/lbsuite/test-filter (libtest's filters).
filter=""
[ -f /opt/lbsuite/test-filter ] && filter=$(cat /opt/lbsuite/test-filter)
for bin in /opt/lbsuite/bin/*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/-[0-9a-f]\{16\}$//')
    log=/tmp/$name.log
    # stderr apart: what a test writes there directly (the lab's notes) would
    # split libtest's `test <name> ... ok` lines.
    LBSUITE_VM=1 LBSUITE_DAEMON_DIR=/opt/lbsuite/daemons LBSUITE_VM_NOTES=/tmp/$name.notes \
        RUST_BACKTRACE=1 in_lb "$bin" --ignored --test-threads=1 $filter >"$log" 2>"$log.stderr"
    rc=$?
    # libtest prints `test <path> ... ok|FAILED|ignored`.
    ran=0
    while read -r word tname dots result rest; do
        [ "$word" = test ] && [ "$dots" = "..." ] || continue
        ran=$((ran + 1))
        case "$result" in
            ok) pass "$name::$tname" ;;
            ignored) ;;
            *) fail "$name::$tname" "$result" ;;
        esac
    done <"$log"
    # The summary, with libtest's wall time, and the tests' notes.
    grep '^test result' "$log" | sed "s/^/  | $name: /"
    [ -f "/tmp/$name.notes" ] && sed "s/^/  | $name: /" "/tmp/$name.notes"
    if [ $rc -ne 0 ]; then
        # The failures' messages, for the host log.
        sed -n '/^failures:/,/^test result/p' "$log" | head -n 60 | sed 's/^/  | /'
        [ $ran -gt 0 ] || fail "$name" "exit $rc, no test ran: $(tail -n 5 "$log" "$log.stderr" | tr '\n' ' ')"
    elif [ $ran -eq 0 ] && [ -z "$filter" ]; then
        fail "$name" "no test ran"
    fi
done

$IP netns del lb 2>/dev/null
if [ $fails -eq 0 ]; then
    echo "VERDICT PASS"
else
    echo "VERDICT FAIL ($fails failed)"
fi
