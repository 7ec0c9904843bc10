#!/usr/bin/env bash
# The Debian package under systemd on a stock Debian bookworm: builds a root file
# system with mmdebstrap from the archive apt is configured for, boots it under qemu
# (TCG) with Debian's own kernel and systemd as PID 1, and runs systemd-guest.sh in
# it: dpkg -i of the package, two nodes as network namespaces run by the packaged
# units (instance drop-ins with NetworkNamespacePath=), IPVS services, traffic
# through the VIP with SNAT, failover, a refused reload, the journal, purge.
#
#   integration/vm/systemd-tests.sh [--deb PATH] [--timeout SECS]
#
# Without --deb, scripts/package.sh builds the package first. Prints the guest's
# `TEST <name> PASS|FAIL` lines and `VERDICT PASS|FAIL`; exits 0 only on PASS (1 on
# FAIL, 2 on a timeout or setup error).
#
# The root file system is an initramfs (uncompressed cpio): the kernel unpacks it
# into RAM and runs /lib/systemd/systemd; no disk, no initrd tools. The archive's
# debs are kept in ${LBSUITE_VM_CACHE:-~/.cache/lbsuite-vm}/rootfs-debs; the kernel
# and its modules are the IPVS stage's (run.sh, lib.sh's prepare_kernel). The root
# file system without the package is kept there too (see below).
#
# Environment: VM_TIMEOUT (seconds, default 1500: the guest part took 7 min on a
# quiet machine and over 10 under a load of 16 on 2 cores), VM_MEMORY (MiB, default 2048),
# VM_SMP (2), VM_KEEP=1 keeps the work directory, VM_VERBOSE=1 shows the console,
# VM_ROOTFS_REBUILD=1 builds the root file system again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
deb=""
timeout_s="${VM_TIMEOUT:-1500}"
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) deb="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "systemd-vm: unknown argument $1" >&2; exit 2 ;;
    esac
done

cache="${LBSUITE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lbsuite-vm}"
mkdir -p "$cache/debs" "$cache/rootfs-debs"
log() { echo "systemd-vm: $*" >&2; }
die() { echo "systemd-vm: error: $*" >&2; exit 2; }
source "$here/lib.sh"

command -v mmdebstrap >/dev/null || die "no mmdebstrap (scripts/deps.sh installs it)"
if [ -z "$deb" ]; then
    deb="$("$repo/scripts/package.sh" | tail -n 1)"
fi
[ -f "$deb" ] || die "no package $deb"
start=$(date +%s)

prepare_kernel
setup_qemu

work="$(mktemp -d "${TMPDIR:-/tmp}/lbsuite-systemd-vm.XXXXXX")"
cleanup() { if [ "${VM_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# The archive apt is configured for: the host's own source files, as they are.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -Eq '^(deb |Types:.*\bdeb\b)' "$f" && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || die "no apt sources in /etc/apt"

# What the guest needs besides the package: systemd, the tools the checks use
# (ipvsadm, nft, iproute2, sysctl from procps, busybox for httpd/wget; tcpdump and
# conntrack for the diagnostics of a failed traffic check; frr and bird2 for the
# active-active checks, their services disabled), kmod for modprobe, and
# the package's own Depends: so that dpkg -i inside the guest finds them.
depends="$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ *//; s/[ (].*//' | grep . | paste -sd, -)"
include="systemd,systemd-sysv,kmod,procps,iproute2,ipvsadm,nftables,busybox,tcpdump,conntrack,frr,bird2,$depends"

# The base root file system (everything but the package and the test) is kept in the
# cache as rootfs-<key>.cpio (beside the kernel: it outlives target/ and a fresh
# clone); the key covers what goes into it: the package
# list, the apt sources, the kernel, and the recipe below (bump `recipe` when it
# changes). It is rebuilt when older than a week (the archive moves with security
# updates) or when VM_ROOTFS_REBUILD=1.
recipe=1
key="$( { echo "$recipe $include $kver"; cat "${sources[@]}"; } | sha256sum | cut -c1-16)"
basedir="$cache"
base="$basedir/rootfs-$key.cpio"
if [ -f "$base" ] && [ "${VM_ROOTFS_REBUILD:-0}" != 1 ] \
    && [ -z "$(find "$base" -mtime +6 2>/dev/null)" ]; then
    log "root file system from $base"
else
    rootfs="$work/rootfs"
    log "mmdebstrap bookworm (minbase + $include)"
    t0=$(date +%s)
    mmdebstrap --quiet --variant=minbase --include="$include" \
        --skip=essential/unlink \
        --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/" \
        --setup-hook="sync-in '$cache/rootfs-debs' /var/cache/apt/archives/" \
        --customize-hook="sync-out /var/cache/apt/archives '$cache/rootfs-debs'" \
        --customize-hook="cp -a '$kdir/modules/lib/modules' \"\$1\"/lib/ && chroot \"\$1\" depmod '$kver'" \
        --customize-hook="rm -rf \"\$1\"/usr/share/locale/* \"\$1\"/usr/share/doc/* \"\$1\"/usr/share/info/*" \
        --customize-hook="chroot \"\$1\" systemctl mask serial-getty@ttyS0.service getty@tty1.service >/dev/null 2>&1" \
        --customize-hook="chroot \"\$1\" systemctl disable frr.service bird.service >/dev/null 2>&1 || true" \
        --customize-hook="echo lbsuite-vm > \"\$1\"/etc/hostname" \
        bookworm "$rootfs" "${sources[@]}" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    log "root file system $(du -sh "$rootfs" | cut -f1) in $(( $(date +%s) - t0 )) s"
    mkdir -p "$basedir"
    rm -f "$basedir"/rootfs-*.cpio
    (cd "$rootfs" && find . | "$busybox" cpio -o -H newc 2>/dev/null > "$base.tmp")
    mv "$base.tmp" "$base"
    rm -rf "$rootfs"
fi

# The package and the test on top: a second cpio archive after the first (the kernel
# unpacks both, in order, into the same root).
overlay="$work/overlay"
mkdir -p "$overlay/root" "$overlay/etc/systemd/system/multi-user.target.wants"
chmod 700 "$overlay/root"
cp "$deb" "$overlay/root/lbsuite.deb"
install -m 755 "$here/systemd-guest.sh" "$overlay/root/systemd-guest.sh"
cp "$here/systemd-guest.service" "$overlay/etc/systemd/system/lbsuite-vm-test.service"
ln -s ../lbsuite-vm-test.service "$overlay/etc/systemd/system/multi-user.target.wants/"
(cd "$overlay" && find . | "$busybox" cpio -o -H newc 2>/dev/null > "$work/overlay.cpio")
cat "$base" "$work/overlay.cpio" > "$work/rootfs.cpio"
log "initramfs $(du -h "$work/rootfs.cpio" | cut -f1) (kernel $kver); ready after $(( $(date +%s) - start )) s"

memory_default=2048
boot_guest "$kdir/vmlinuz" "$work/rootfs.cpio" \
    "console=ttyS0 rdinit=/lib/systemd/systemd panic=-1 quiet systemd.show_status=0"
