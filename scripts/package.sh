#!/usr/bin/env bash
# Builds the Debian package: target/debian/lbsuite_<version>_amd64.deb.
#
#   scripts/package.sh
#
# The three programs in release mode, the man pages and shell completions generated
# from the code (crates/docgen: clap_mangen, clap_complete; cluster.toml(5) from
# cluster.toml.example), then cargo-deb (installed with `cargo install cargo-deb
# --locked` when missing) on crates/docgen's [package.metadata.deb], which lists what goes
# where. cargo-deb strips the programs, makes /etc/lbsuite/cluster.toml a conffile,
# adds the units' maintainer scripts and computes Depends: with dpkg-shlibdeps.
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/deps.sh

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package: installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi

echo "package: building vrrpd, lbd, vrrpctl (release)"
cargo build --release --quiet -p vrrpd -p lbd -p vrrpctl --bins
cargo build --quiet -p docgen --bin lbsuite-docgen
# cargo-deb strips only its own package's targets: the programs are stripped here.
mkdir -p target/release/lbsuite-bin
for b in vrrpd lbd vrrpctl; do
    strip --strip-debug -o "target/release/lbsuite-bin/$b" "target/release/$b"
done

docs=target/release/lbsuite-docs
rm -rf "$docs"
target/debug/lbsuite-docgen "$docs"
# Man pages compressed, reproducibly (no name, no time stamp).
gzip -9 -n "$docs"/man/*

version=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"name":"docgen","version":"\([^"]*\)".*/\1/p')
[[ -n $version ]] || { echo "package: cannot read the version from cargo metadata" >&2; exit 1; }
mkdir -p target/debian
deb=target/debian/lbsuite_${version}_amd64.deb
rm -f "$deb"
cargo deb -p docgen --no-build --output "$deb" >/dev/null
# The programs as packaged carry no debug sections (the release profile has debug = 1).
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"
for b in vrrpd lbd vrrpctl; do
    if readelf -S "$unpacked/usr/sbin/$b" | grep -q '\.debug_info'; then
        echo "package: /usr/sbin/$b in $deb is not stripped" >&2
        exit 1
    fi
done
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\): /package: \1: /p'
echo "$deb"
