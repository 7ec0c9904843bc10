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

# apt-get download as root would drop privileges to _apt, which cannot write
# into a home directory; downloading as the caller is fine for public debs.
apt_download() {
    (cd "$cache/debs" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "$@" >/dev/null) \
        || die "apt-get download $* failed (run 'apt-get update' first?)"
}

# The newest cached deb of a package (name_version_arch.deb).
cached_deb() {
    ls -1 "$cache/debs/$1"_*.deb 2>/dev/null | sort -V | tail -n 1
}

# Fetches a package's deb into the cache unless a deb of it is there.
fetch() {
    local missing=()
    for p in "$@"; do
        [ -n "$(cached_deb "$p")" ] || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] || apt_download "${missing[@]}"
}

apt_lists_ready() {
    [ -n "$(apt-cache policy linux-image-amd64 2>/dev/null | awk '/Candidate:/ && $2 != "(none)"')" ]
}

# --- the kernel ------------------------------------------------------------
# linux-image-amd64 moves with security updates and old builds leave the
# archive: resolve the concrete linux-image-<abi>-amd64 now, or fall back to
# the newest one already cached when apt knows nothing (offline).
kpkg=""
if ! apt_lists_ready && [ "$(id -u)" = 0 ]; then
    log "apt lists are empty: apt-get update"
    apt-get -q update >/dev/null || true
fi
if apt_lists_ready; then
    kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
if [ -z "$kpkg" ]; then
    kpkg="$(ls -1d "$cache"/kernel-linux-image-* 2>/dev/null | sort -V | tail -n 1 | sed 's|.*/kernel-||')"
    [ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (no apt lists, nothing cached)"
    log "apt cannot resolve linux-image-amd64; using cached $kpkg"
fi
kdir="$cache/kernel-$kpkg"

# --- busybox, used on the host too (depmod, cpio) ---------------------------
fetch busybox-static
bbdir="$cache/busybox"
if [ ! -x "$bbdir/bin/busybox" ]; then
    rm -rf "$bbdir"; mkdir -p "$bbdir"
    dpkg-deb -x "$(cached_deb busybox-static)" "$bbdir"
fi
busybox="$bbdir/bin/busybox"

if [ ! -f "$kdir/ready" ]; then
    fetch "$kpkg"
    log "unpacking $kpkg"
    rm -rf "$kdir"; mkdir -p "$kdir/full"
    # Only the kernel image and the module trees we may need: a tenth of it.
    dpkg-deb --fsys-tarfile "$(cached_deb "$kpkg")" | tar -x -C "$kdir/full" --wildcards \
        './boot/vmlinuz-*' './lib/modules/*/kernel/net/*' './lib/modules/*/kernel/lib/*' \
        './lib/modules/*/kernel/crypto/*' './lib/modules/*/kernel/drivers/net/*' \
        './lib/modules/*/kernel/arch/x86/crypto/*' './lib/modules/*/modules.builtin' \
        './lib/modules/*/modules.order'
    kver="$(ls "$kdir/full/lib/modules")"
    "$busybox" depmod -b "$kdir/full" "$kver"
    # The modules the guest loads, and everything they depend on.
    m="$kdir/full/lib/modules/$kver"
    {
        (cd "$m" && ls kernel/net/netfilter/ipvs/*.ko kernel/net/netfilter/nf_*.ko \
            kernel/net/netfilter/nft_*.ko kernel/net/netfilter/nfnetlink*.ko \
            kernel/net/ipv4/netfilter/*.ko kernel/net/ipv6/netfilter/*.ko \
            kernel/drivers/net/veth.ko kernel/drivers/net/macvlan.ko \
            kernel/drivers/net/dummy.ko kernel/net/bridge/bridge.ko \
            kernel/crypto/crc32c_generic.ko kernel/arch/x86/crypto/crc32c-intel.ko \
            kernel/net/8021q/8021q.ko 2>/dev/null)
    } | sort -u > "$kdir/wanted"
    awk -F': *' 'NR==FNR {want[$1]=1; next}
        ($1 in want) {print $1; n=split($2, d, " "); for (i=1; i<=n; i++) print d[i]}' \
        "$kdir/wanted" "$m/modules.dep" | sort -u > "$kdir/closure"
    mkdir -p "$kdir/modules/lib/modules/$kver"
    (cd "$m" && tar -c -T "$kdir/closure" modules.builtin modules.order) \
        | tar -x -C "$kdir/modules/lib/modules/$kver"
    "$busybox" depmod -b "$kdir/modules" "$kver"
    cp "$kdir/full/boot/vmlinuz-$kver" "$kdir/vmlinuz"
    echo "$kver" > "$kdir/version"
    rm -rf "$kdir/full"
    touch "$kdir/ready"
fi
kver="$(cat "$kdir/version")"

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
qemu="$(command -v qemu-system-x86_64 || true)"
qemu_env=()
qemu_data=()
if [ -z "$qemu" ]; then
    qroot="$cache/qemu"
    if [ ! -f "$qroot/ready" ]; then
        log "no qemu-system-x86_64 installed: unpacking Debian's into the cache"
        # What apt would install for it (without installing anything); on a
        # host with a newer qemu-utils this also avoids apt removing it.
        qpkgs=($(apt-get install -s --no-install-recommends qemu-system-x86 2>/dev/null \
            | awk '/^Inst / {print $2}'))
        [ ${#qpkgs[@]} -gt 0 ] || die "apt cannot resolve qemu-system-x86"
        fetch "${qpkgs[@]}"
        rm -rf "$qroot"; mkdir -p "$qroot"
        for p in "${qpkgs[@]}"; do dpkg-deb -x "$(cached_deb "$p")" "$qroot"; done
        touch "$qroot/ready"
    fi
    qemu="$qroot/usr/bin/qemu-system-x86_64"
    qemu_env=(env "LD_LIBRARY_PATH=$qroot/usr/lib/x86_64-linux-gnu:$qroot/lib/x86_64-linux-gnu")
    qemu_data=(-L "$qroot/usr/share/qemu" -L "$qroot/usr/share/seabios")
fi

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
console="$work/console.log"
set +e
timeout --foreground -k 5 "$timeout_s" ${qemu_env[@]+"${qemu_env[@]}"} "$qemu" \
    ${qemu_data[@]+"${qemu_data[@]}"} \
    -accel tcg -cpu max -smp "${VM_SMP:-2}" -m "${VM_MEMORY:-1024}" \
    -nic none -vga none -display none -serial stdio -monitor none -no-reboot \
    -kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" </dev/null >"$console" 2>&1 &
qpid=$!
if [ "${VM_VERBOSE:-0}" = 1 ]; then
    tail -n +1 -f "$console" --pid="$qpid" &
fi
wait "$qpid"
status=$?
set -e
tr -d '\r' < "$console" > "$console.clean"
elapsed=$(( $(date +%s) - start ))

grep -E '^(TEST|MODULE|GUEST) |^  \| ' "$console.clean" || true
verdict="$(grep -E '^VERDICT ' "$console.clean" | tail -n 1 || true)"
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    log "timeout: no power-off after ${timeout_s} s; console tail:"
    tail -n 30 "$console.clean" >&2
    exit 2
fi
if [ -z "$verdict" ]; then
    log "the guest gave no verdict (qemu exit $status); console tail:"
    tail -n 40 "$console.clean" >&2
    exit 2
fi
echo "$verdict"
log "done in ${elapsed} s"
case "$verdict" in
    "VERDICT PASS"*) exit 0 ;;
    *) exit 1 ;;
esac
