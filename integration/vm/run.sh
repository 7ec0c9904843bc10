#!/usr/bin/env bash
# Boots Debian's stock kernel under qemu (software emulation) from a busybox
# initramfs and runs a guest test script against the real IPVS, nftables and
# conntrack of that kernel: this machine's own kernel has no CONFIG_IP_VS.
#
#   integration/vm/run.sh [--script GUEST_SCRIPT] [--timeout SECS]
#                         [--filter WORD]... [--daemon PROGRAM]... [FILES...]
#
# FILES (test binaries, scripts) are copied into the guest's /opt/lbsuite/bin,
# with the shared libraries they need; each PROGRAM (lbd, vrrpd, vrrpctl: what
# the tests start, not tests themselves) into /opt/lbsuite/daemons, likewise.
# Each WORD of --filter (also VM_TEST_FILTER, words split on blanks) is given to
# every test binary as a libtest filter: only the tests whose names contain one
# of them run.
# The guest script (default: guest-tests.sh beside this file) prints
# `TEST <name> PASS|FAIL [detail]` lines and a final `VERDICT PASS|FAIL`;
# this script prints those lines and exits 0 only on `VERDICT PASS` (1 on
# FAIL, 2 on a timeout or a crash).
#
# Nothing is installed on the host: the Debian packages (kernel, busybox-static,
# ipvsadm, iproute2, nftables, their libraries, and qemu itself when no
# qemu-system-x86_64 is installed) are fetched with `apt-get download`, unpacked
# with `dpkg-deb -x` into the cache and reused on later runs:
#   ${LBSUITE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lbsuite-vm}
# Host needs: apt-get, apt-cache, dpkg-deb, gzip, and Debian bookworm's
# package lists (`apt-get update` once); root only for that update.
#
# Environment: VM_TIMEOUT (seconds, default 240), VM_MEMORY (MiB, default
# 1024), VM_SMP (default 2), VM_KEEP=1 keeps the work directory,
# VM_VERBOSE=1 echoes the whole serial console.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/guest-tests.sh"
timeout_s="${VM_TIMEOUT:-240}"
files=()
daemons=()
filters=(${VM_TEST_FILTER:-})
while [ $# -gt 0 ]; do
    case "$1" in
        --script) script="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --daemon) daemons+=("$2"); shift 2 ;;
        --filter) filters+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) files+=("$1"); shift ;;
    esac
done

cache="${LBSUITE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lbsuite-vm}"
mkdir -p "$cache/debs"
log() { echo "vm: $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 2; }
start=$(date +%s)

source "$here/lib.sh"

# --- the kernel ------------------------------------------------------------
prepare_kernel

# --- user-space tools and their libraries -----------------------------------
tools=(ipvsadm iproute2 nftables)
sysroot="$cache/sysroot"
if [ ! -f "$sysroot/ready" ]; then
    rm -rf "$sysroot"; mkdir -p "$sysroot"
    # Every library package in the tools' dependency closure: ld.so picks
    # the ones actually needed below.
    libs=($(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${tools[@]}" 2>/dev/null \
        | grep -E '^(lib|zlib)' | sort -u))
    [ ${#libs[@]} -gt 0 ] || die "apt-cache knows no dependencies of ${tools[*]}"
    fetch "${tools[@]}" "${libs[@]}"
    for p in "${tools[@]}" "${libs[@]}"; do
        dpkg-deb -x "$(cached_deb "$p")" "$sysroot"
    done
    touch "$sysroot/ready"
fi

# --- qemu: the installed one, else unpacked from Debian's packages -----------
setup_qemu

# --- the initramfs ----------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/lbsuite-vm.XXXXXX")"
cleanup() { if [ "${VM_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib64,lib/x86_64-linux-gnu,etc,proc,sys,dev,run,tmp,opt/lbsuite/bin,opt/lbsuite/daemons,var}
ln -s ../run "$root/var/run"

cp "$busybox" "$root/bin/busybox"
# Every applet but `ip`: the real iproute2 is in /usr/sbin (busybox's has no
# netns, no veth).
for a in $("$busybox" --list); do
    case "$a" in ip|busybox) ;; *) ln -sf busybox "$root/bin/$a" ;; esac
done
for a in modprobe insmod rmmod depmod lsmod; do ln -sf ../bin/busybox "$root/sbin/$a"; done
cp -a "$kdir/modules/lib/modules" "$root/lib/"

cp "$sysroot/bin/ip" "$root/usr/sbin/ip"
cp "$sysroot/sbin/ipvsadm" "$root/usr/sbin/ipvsadm"
cp "$sysroot/usr/sbin/nft" "$root/usr/sbin/nft"
cp "$here/init" "$root/init"
cp "$script" "$root/opt/lbsuite/guest-tests.sh"
chmod 755 "$root/init" "$root/opt/lbsuite/guest-tests.sh"
for f in ${files[@]+"${files[@]}"}; do
    [ -f "$f" ] || die "no such file: $f"
    cp "$f" "$root/opt/lbsuite/bin/"
done
for f in ${daemons[@]+"${daemons[@]}"}; do
    [ -f "$f" ] || die "no such program: $f"
    # Debug builds carry ~100 MB of debug info each: the guest holds the
    # initramfs in RAM and unpacks it under emulation. Symbols stay.
    out="$root/opt/lbsuite/daemons/$(basename "$f")"
    strip --strip-debug -o "$out" "$f" 2>/dev/null || cp "$f" "$out"
done
[ ${#filters[@]} -eq 0 ] || printf '%s\n' "${filters[@]}" > "$root/opt/lbsuite/test-filter"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
printf 'hosts: files\n' > "$root/etc/nsswitch.conf"

# Shared libraries of every dynamic binary, resolved by the host's ld.so with
# the unpacked Debian libraries first.
ldso=/lib64/ld-linux-x86-64.so.2
[ -x "$ldso" ] || die "no $ldso on this host"
libpath="$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/x86_64-linux-gnu"
for bin in "$root/usr/sbin/"* "$root/opt/lbsuite/bin/"* "$root/opt/lbsuite/daemons/"*; do
    [ -f "$bin" ] && head -c 4 "$bin" | grep -q ELF || continue
    out="$(LD_LIBRARY_PATH="$libpath" "$ldso" --list "$bin" 2>&1)" || {
        # A static binary: nothing to copy.
        case "$out" in *"not a dynamic"*|*"statically linked"*) continue ;; esac
        die "ld.so cannot list $bin: $out"
    }
    if grep -q "not found" <<<"$out"; then
        die "libraries missing for $(basename "$bin"): $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    awk '/=> \// {print $1, $3}' <<<"$out" | while read -r soname path; do
        cp -L "$path" "$root/lib/x86_64-linux-gnu/$soname"
    done
done
cp -L "$ldso" "$root/lib64/ld-linux-x86-64.so.2"

(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")
log "initramfs $(du -h "$work/initrd.gz" | cut -f1) (kernel $kver); ready after $(( $(date +%s) - start )) s"

# --- boot -------------------------------------------------------------------
boot_guest "$kdir/vmlinuz" "$work/initrd.gz" "console=ttyS0 panic=-1 quiet"
