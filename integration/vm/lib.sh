# Shared by the VM stages (run.sh: IPVS from a busybox initramfs; systemd-tests.sh:
# the Debian package under systemd): Debian packages fetched with `apt-get download`
# into the cache, the concrete kernel package, and qemu. Sourced, not run; expects
# `cache`, `log` and `die` from the caller.

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

# Sets kpkg: the concrete linux-image-<abi>-amd64 package.
resolve_kernel() {
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
}

# Sets qemu, qemu_env and qemu_data (arrays) for the qemu to run.
setup_qemu() {
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
}

# Boots KERNEL with INITRD and the kernel command line APPEND under qemu (TCG),
# prints the guest's `TEST`/`MODULE`/`GUEST` lines and its verdict, and exits: 0 on
# `VERDICT PASS`, 1 on FAIL, 2 on a timeout or a guest without verdict. Expects
# `timeout_s`, `start`, `work` (the console goes there); VM_MEMORY overrides
# `memory_default` (MiB, 1024 unless set), VM_SMP (2) the CPUs.
boot_guest() {
    local memory_default="${memory_default:-1024}"
    local console="$work/console.log" qpid status elapsed verdict
    set +e
    timeout --foreground -k 5 "$timeout_s" ${qemu_env[@]+"${qemu_env[@]}"} "$qemu" \
        ${qemu_data[@]+"${qemu_data[@]}"} \
        -accel tcg -cpu max -smp "${VM_SMP:-2}" -m "${VM_MEMORY:-$memory_default}" \
        -nic none -vga none -display none -serial stdio -monitor none -no-reboot \
        -kernel "$1" -initrd "$2" \
        -append "$3" </dev/null >"$console" 2>&1 &
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
}

# Sets kpkg, kdir, kver and busybox: the kernel resolved and unpacked into the cache,
# with only the modules the guests load (IPVS, netfilter, veth, bridge, dummy,
# macvlan, 8021q, crc32c, ipip) and their dependencies in $kdir/modules/lib/modules, and
# busybox (used on the host too: depmod, cpio).
prepare_kernel() {
    resolve_kernel
    kdir="$cache/kernel-$kpkg"
    fetch busybox-static
    bbdir="$cache/busybox"
    if [ ! -x "$bbdir/bin/busybox" ]; then
        rm -rf "$bbdir"; mkdir -p "$bbdir"
        dpkg-deb -x "$(cached_deb busybox-static)" "$bbdir"
    fi
    busybox="$bbdir/bin/busybox"

    # The marker names the module list's version: a list that grows unpacks again.
    local ready="$kdir/ready-modules-2"
    if [ ! -f "$ready" ]; then
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
                kernel/net/8021q/8021q.ko kernel/net/ipv4/ipip.ko 2>/dev/null)
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
        touch "$ready"
    fi
    kver="$(cat "$kdir/version")"
}
