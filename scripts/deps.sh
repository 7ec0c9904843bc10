#!/usr/bin/env bash
# Installs the Debian packages the suite's build, tests and demo need, when missing.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
# `scripts/deps.sh --bench` adds what the benchmarks compare against or load with.
set -euo pipefail

LBSUITE_DEBS=(
    iproute2        # ip netns, veth, bridges (the test lab)
    curl            # HTTP through the VIP from chosen source addresses (lbd/tests/ecmp.rs)
    nftables        # nft: an independent reader of the kernel's ruleset in tests
    conntrack       # conntrack: reading connection state in tests
    libnftnl-dev    # nftnl-sys (lbd's nftables backend)
    libmnl-dev
    pkg-config
    gcc
    libc6-dev
    procps          # sysctl
    keepalived      # the foreign VRRP peer in the interop tests
    tcpdump         # captures asserted by the wire tests
    ethtool         # health_bench: GRO for veth NAPI threads
    dpkg-dev        # dpkg-shlibdeps: the package's Depends: (scripts/package.sh, cargo-deb)
    mmdebstrap      # the VM stage's Debian root file system (integration/vm/systemd-tests.sh)
    prometheus      # promtool: checks and unit-tests dist/prometheus's alert rules (integration/tests/alerts_dashboard.rs)
    chromium        # headless browser loading the daemons' status pages (integration/tests/status_page.rs)
    frr             # bgpd/zebra: the router and the balancers' BGP speakers in the active-active test (lbd/tests/ecmp.rs)
    bird2           # BIRD 2: the other routing daemon lbd can announce VIPs through
)
if [[ " $* " == *" --bench "* ]]; then
    LBSUITE_DEBS+=(
        nginx-light     # lb_bench: the servers behind the VIP
        wrk             # lb_bench: the client load
        conntrackd      # sync_bench: the baseline beside lbd's sync
        stress-ng       # vrrp_bench --only false-failover: the saturating load
    )
fi

missing=()
for pkg in "${LBSUITE_DEBS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "deps: missing Debian packages: ${missing[*]}; run as root, or: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The suite needs promtool only: the prometheus server the package starts must not
    # keep running (and listening on :9090).
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    # The tests start their own routing daemons in namespaces: none in the root one.
    for unit in frr bird; do
        if [[ " ${missing[*]} " == *" ${unit}"* ]] && [[ -d /run/systemd/system ]]; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
    done
fi

if ! command -v cargo >/dev/null 2>&1; then
    for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [[ -x $d/cargo ]] && export PATH="$d:$PATH" && break
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found. Install a Rust toolchain >= 1.80 (rustup, stable) and retry." >&2
    exit 1
fi
