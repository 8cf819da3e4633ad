#!/usr/bin/env bash
# Installs the real BGP peers the interop tests run against, when missing:
#   - BIRD 2 (Debian bird2), FRR bgpd + bfdd + vtysh (Debian frr), iproute2, nftables,
#     etcd 3.4 and etcdctl (Debian etcd-server, etcd-client; for agent_interop),
#     bgpdump and tshark (for bmp_interop):
#     apt-get install;
#   - BIRD 1.6.8 (Debian bird; conflicts with bird2 as a package, so it is not installed
#     but fetched with `apt-get download` and unpacked with `dpkg -x`) into PEERS_DIR/bird16.
#
#   sudo tests/scripts/install-peers.sh [PEERS_DIR]     (default: <repo>/target/peers)
#
# Idempotent: does nothing that is already done.  Prints where BIRD 1.6 is; the tests find
# it through BIRD16_DIR (default <repo>/target/peers/bird16).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PEERS_DIR=${1:-$REPO/target/peers}
BIRD16_DIR=$PEERS_DIR/bird16
BGPD=/usr/lib/frr/bgpd

log() { printf '[install-peers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (apt-get; the tests need network namespaces too)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install bird2, frr, iproute2 and BIRD 1.6.8 by hand"

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update_once() {
    if ((updated == 0)); then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        updated=1
    fi
}

# ------------------------------------------------------------------ bird2, frr, iproute2
missing=()
{ command -v bird >/dev/null 2>&1 && command -v birdc >/dev/null 2>&1 &&
    bird --version 2>&1 | grep -q 'BIRD version 2\.'; } || missing+=(bird2)
{ [[ -x $BGPD ]] && command -v vtysh >/dev/null 2>&1; } || missing+=(frr)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# bfd_interop silences a link with nftables (this kernel has no netem).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# agent_interop runs a real etcd (3.4) and writes Calico's keys with etcdctl.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# bmp_interop reads our MRT dumps with bgpdump, and our BMP stream with tshark's dissector.
command -v bgpdump >/dev/null 2>&1 || missing+=(bgpdump)
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
if ((${#missing[@]})); then
    apt_update_once
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        die "cannot install ${missing[*]} with apt-get"
fi
bird --version 2>&1 | grep -q 'BIRD version 2\.' || die "bird is not BIRD 2 after installing bird2"
[[ -x $BGPD ]] || die "$BGPD missing after installing frr"
[[ -x /usr/lib/frr/bfdd ]] || die "/usr/lib/frr/bfdd missing (Debian frr ships it)"
command -v nft >/dev/null 2>&1 || die "nft missing after installing nftables"
command -v vtysh >/dev/null 2>&1 || die "vtysh missing after installing frr"
command -v etcd >/dev/null 2>&1 || die "etcd missing after installing etcd-server"
command -v etcdctl >/dev/null 2>&1 || die "etcdctl missing after installing etcd-client"

# ------------------------------------------------------------------ BIRD 1.6 (unpacked)
if [[ ! -x $BIRD16_DIR/usr/sbin/bird || ! -x $BIRD16_DIR/usr/sbin/birdc ]]; then
    mkdir -p "$PEERS_DIR"
    dl=$(mktemp -d "$PEERS_DIR/.download.XXXXXX")
    trap 'rm -rf "$dl"' EXIT
    if ! (cd "$dl" && apt-get download bird >/dev/null 2>&1); then
        apt_update_once
        (cd "$dl" && apt-get download bird) || die "cannot download the Debian package 'bird' (BIRD 1.6)"
    fi
    debs=("$dl"/bird_*.deb)
    deb=${debs[0]}
    [[ -f $deb ]] || die "apt-get download bird produced no bird_*.deb"
    rm -rf "$BIRD16_DIR.tmp"
    dpkg -x "$deb" "$BIRD16_DIR.tmp" || die "dpkg -x $deb failed"
    rm -rf "$BIRD16_DIR"
    mv "$BIRD16_DIR.tmp" "$BIRD16_DIR"
    log "unpacked $(basename "$deb") into $BIRD16_DIR"
fi
"$BIRD16_DIR/usr/sbin/bird" --version 2>&1 | grep -q 'BIRD version 1\.6' ||
    die "$BIRD16_DIR/usr/sbin/bird does not run or is not BIRD 1.6: $("$BIRD16_DIR/usr/sbin/bird" --version 2>&1 | head -n1)"

echo "BIRD16_DIR=$BIRD16_DIR"
echo "bird 1.6: $BIRD16_DIR/usr/sbin/bird ($("$BIRD16_DIR/usr/sbin/bird" --version 2>&1 | head -n1))"
