#!/usr/bin/env bash
# Regenerate tests/data/captures/*.bgp: raw BGP byte streams captured from real
# BIRD 2 and FRR bgpd sessions, one file per speaker and session direction.
#
#   sudo tests/scripts/capture-vectors.sh [SCENARIO...]
#
# SCENARIO is any of: bird2-frr-ebgp bird2-ibgp-rr addpath frr-extnh (default: all).
# Env: OUT=dir (default tests/data/captures), KEEP_WORK=1 keeps the temp dir
# (configs, daemon logs, pcaps) for debugging.
#
# Everything runs in network namespaces named bwcap-* that this script creates,
# joined by veth pairs, with documentation addresses only (192.0.2.0/24,
# 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).  tcpdump captures on the veth;
# tests/scripts/pcap-to-bgp.py reassembles each TCP direction into a .bgp file.
# Only processes started here (tracked by PID file) are stopped, and only the
# namespaces created here are deleted, by the EXIT trap.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$REPO/tests/data/captures}
PY="$HERE/pcap-to-bgp.py"
ALL_SCENARIOS=(bird2-frr-ebgp bird2-ibgp-rr addpath frr-extnh)
BGPD=/usr/lib/frr/bgpd

log() { printf '[capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"

# ------------------------------------------------------------------ packages
install_missing() {
  local missing=()
  command -v bird >/dev/null 2>&1 || missing+=(bird2)
  [[ -x $BGPD ]] || missing+=(frr)
  command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  command -v birdc >/dev/null && command -v vtysh >/dev/null || die "birdc/vtysh missing"
}
install_missing

# ------------------------------------------------------------------ bookkeeping
WORK=$(mktemp -d /tmp/bwcap.XXXXXX)
mkdir -p "$WORK/pids"
CREATED_NS=()

proc_alive() { # running and not a zombie
  local pid=$1 st
  [[ -r /proc/$pid/stat ]] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

# stop_pidfile FILE: SIGTERM (or $2) the process recorded in FILE if it is still
# one of ours (same executable name), wait at most 5 s, then SIGKILL.
stop_pidfile() {
  local f=$1 sig=${2:-TERM} pid comm want i
  [[ -f $f ]] || return 0
  read -r pid want <"$f" || true
  rm -f "$f"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  proc_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  [[ $comm == "$want" ]] || { log "pid $pid is '$comm', not '$want': left alone"; return 0; }
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    proc_alive "$pid" || break
    sleep 0.1
  done
  if proc_alive "$pid"; then
    log "pid $pid ($comm) ignored SIG$sig, killing"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do proc_alive "$pid" || break; sleep 0.1; done
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? f ns
  set +e
  for f in "$WORK"/pids/*.pid; do
    [[ -e $f ]] && stop_pidfile "$f"
  done
  for ns in "${CREATED_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  if [[ ${KEEP_WORK:-0} == 1 || $rc != 0 ]]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bg NAME NS EXE ARGS...: run EXE inside namespace NS in the background, PID file
# $WORK/pids/NAME.pid ("PID EXE-NAME"), output to $WORK/NAME.out.
bg() {
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" >"$WORK/$name.out" 2>&1 &
  local pid=$!
  local comm
  comm=$(basename "$1")
  echo "$pid ${comm:0:15}" >"$WORK/pids/$name.pid"
}

# ------------------------------------------------------------------ topology
mkns() {
  local ns=$1
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    die "namespace $ns already exists (left over from an interrupted run?); remove it with: ip netns del $ns"
  fi
  ip netns add "$ns"
  CREATED_NS+=("$ns")
  # No auto-generated link-local addresses, no router solicitations: the only
  # addresses in play are the documentation ones configured below.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.addr_gen_mode=1 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
    net.ipv6.conf.default.router_solicitations=0 >/dev/null
  ip -n "$ns" link set lo up
}

# link NS1 IF1 NS2 IF2: veth pair created directly inside the two namespaces.
link() {
  local ns1=$1 if1=$2 ns2=$3 if2=$4 n i
  ip link add "$if1" netns "$ns1" type veth peer name "$if2" netns "$ns2"
  for n in "$ns1:$if1" "$ns2:$if2"; do
    ip netns exec "${n%%:*}" sysctl -qw "net.ipv6.conf.${n#*:}.addr_gen_mode=1" >/dev/null
    ip -n "${n%%:*}" link set "${n#*:}" up
  done
}

addr() { # addr NS IF ADDR/LEN...
  local ns=$1 dev=$2 a
  shift 2
  for a in "$@"; do
    if [[ $a == *:* ]]; then
      ip -n "$ns" addr add "$a" dev "$dev" nodad
    else
      ip -n "$ns" addr add "$a" dev "$dev"
    fi
  done
}

# ------------------------------------------------------------------ daemons
start_capture() { # start_capture NAME NS IF
  local name=$1 ns=$2 dev=$3 i
  bg "tcpdump-$name" "$ns" tcpdump -i "$dev" -n -U -s 0 -Z root -w "$WORK/$name.pcap" 'tcp port 179'
  for ((i = 0; i < 50; i++)); do
    grep -q "listening on" "$WORK/tcpdump-$name.out" 2>/dev/null && return 0
    proc_alive "$(cut -d' ' -f1 "$WORK/pids/tcpdump-$name.pid")" || break
    sleep 0.1
  done
  cat "$WORK/tcpdump-$name.out" >&2
  die "tcpdump on $ns/$dev did not start"
}

stop_capture() { # flush and close the pcap (SIGINT makes tcpdump write everything)
  sleep 0.5
  stop_pidfile "$WORK/pids/tcpdump-$1.pid" INT
}

start_bird() { # start_bird NAME NS  (config in $WORK/NAME.conf)
  local name=$1 ns=$2
  bird -p -c "$WORK/$name.conf" || die "bad BIRD config $name"
  bg "$name" "$ns" bird -f -c "$WORK/$name.conf" -s "$WORK/$name.ctl" -P "$WORK/$name.birdpid"
}

start_frr() { # start_frr NAME NS LISTEN-ADDR...  (config in $WORK/NAME.conf)
  local name=$1 ns=$2 a
  shift 2
  local listen=()
  for a in "$@"; do listen+=(-l "$a"); done
  mkdir -p "$WORK/$name.vty"
  bg "$name" "$ns" "$BGPD" -Z -S -f "$WORK/$name.conf" -i "$WORK/$name.frrpid" \
    --vty_socket "$WORK/$name.vty" "${listen[@]}" -p 179 -P 0
}

birdc_() { local name=$1; shift; birdc -s "$WORK/$name.ctl" "$@"; }
vtysh_() { local name=$1; shift; vtysh --vty_socket "$WORK/$name.vty" -d bgpd "$@"; }

# vtysh_conf NAME "router bgp N" "address-family ..." "command" ...
vtysh_conf() {
  local name=$1 args=(-c "configure terminal") l
  shift
  for l in "$@"; do args+=(-c "$l"); done
  vtysh_ "$name" "${args[@]}" >/dev/null
}

# wait_bird_established NAME PROTO: bounded (20 s)
wait_bird_established() {
  local name=$1 proto=$2 i
  for ((i = 0; i < 100; i++)); do
    if birdc_ "$name" show protocols "$proto" 2>/dev/null | grep -q Established; then
      return 0
    fi
    sleep 0.2
  done
  birdc_ "$name" show protocols all "$proto" >&2 || true
  die "$name: BGP session $proto not established within 20 s"
}

# wait_bird_imported NAME PROTO N: until the protocol imported >= N routes (10 s)
wait_bird_imported() {
  local name=$1 proto=$2 want=$3 i got=0
  for ((i = 0; i < 50; i++)); do
    got=$(birdc_ "$name" show protocols all "$proto" 2>/dev/null |
      awk '/Routes:/ {s += $2} END {print s + 0}')
    ((got >= want)) && return 0
    sleep 0.2
  done
  die "$name: $proto imported only $got of $want routes within 10 s"
}

# wait_frr_pfx NAME NEIGHBOR AFI N: until FRR received >= N prefixes from NEIGHBOR
wait_frr_pfx() {
  local name=$1 nbr=$2 afi=$3 want=$4 i got=0
  for ((i = 0; i < 50; i++)); do
    got=$(vtysh_ "$name" -c "show bgp $afi unicast summary json" 2>/dev/null |
      python3 -c 'import json,sys
d=json.load(sys.stdin); print(d.get("peers",{}).get(sys.argv[1],{}).get("pfxRcd",0))' "$nbr" \
      2>/dev/null || echo 0)
    ((got >= want)) && return 0
    sleep 0.2
  done
  die "$name: received only $got of $want $afi prefixes from $nbr within 10 s"
}

KEEPALIVE_WAIT=4 # > keepalive interval (3 s): every session shows periodic KEEPALIVEs

frr_common() { # FRR config head: no hostname/domain leak, logging to the work dir
  cat <<EOF
frr defaults traditional
hostname $1
log file $WORK/$1.log
log timestamp precision 3
debug bgp neighbor-events
!
EOF
}

bird_common() { # BIRD config head
  cat <<EOF
router id $2;
log "$WORK/$1.log" all;
timeformat protocol iso long;
protocol device { scan time 10; }
EOF
}

# ================================================================== scenario a
# BIRD 2 (AS 65001) <-> FRR (AS 65002), eBGP over IPv4, IPv4 + IPv6 unicast.
scenario_bird2_frr_ebgp() {
  local S=bird2-frr-ebgp B=a-bird F=a-frr
  mkns bwcap-a-bird
  mkns bwcap-a-frr
  link bwcap-a-bird va-bird bwcap-a-frr va-frr
  addr bwcap-a-bird va-bird 192.0.2.1/30 2001:db8:0:1::1/64
  addr bwcap-a-frr va-frr 192.0.2.2/30 2001:db8:0:1::2/64

  {
    bird_common $B 192.0.2.1
    cat <<'EOF'
protocol static s4 {
  ipv4;
  route 203.0.113.0/26 blackhole;
  route 203.0.113.64/26 blackhole;
  route 203.0.113.128/26 blackhole;
}
protocol static s4w {   # disabled mid-session: its routes get withdrawn
  ipv4;
  route 203.0.113.192/27 blackhole;
  route 203.0.113.224/27 blackhole;
}
protocol static s6 {
  ipv6;
  route 2001:db8:100::/48 blackhole;
  route 2001:db8:101::/48 blackhole;
}
protocol static s6w {
  ipv6;
  route 2001:db8:102::/48 blackhole;
  route 2001:db8:103::/48 blackhole;
}
filter to_frr {
  if source != RTS_STATIC then reject;
  if net = 203.0.113.0/26 then {
    bgp_origin = ORIGIN_IGP;
    bgp_med = 50;
    bgp_community.add((65001,100));
    bgp_community.add((65001,200));
  }
  if net = 203.0.113.64/26 then {
    bgp_path.prepend(65001);
    bgp_path.prepend(65001);
    bgp_large_community.add((65001,1,2));
    bgp_large_community.add((4200000000,3,4));
  }
  if net = 203.0.113.128/26 then {
    bgp_path.prepend(64512);
    bgp_path.prepend(64513);
    bgp_path.prepend(64514);
    bgp_ext_community.add((rt,65001,10));
    bgp_ext_community.add((ro,192.0.2.1,7));
    bgp_community.add((65535,65281));
  }
  if net = 203.0.113.192/27 then {
    bgp_med = 0;
    bgp_community.add((65001,666));
    bgp_large_community.add((65001,666,0));
  }
  if net = 2001:db8:100::/48 then {
    bgp_origin = ORIGIN_EGP;
    bgp_med = 7;
    bgp_community.add((65001,6));
    bgp_large_community.add((65001,6,6));
    bgp_ext_community.add((rt,65001,6));
  }
  if net = 2001:db8:101::/48 then {
    bgp_path.prepend(4200000001);
  }
  accept;
}
protocol bgp frr {
  local 192.0.2.1 as 65001;
  neighbor 192.0.2.2 as 65002;
  hold time 9;
  keepalive time 3;
  connect delay time 1;
  connect retry time 2;
  ipv4 { import all; export filter to_frr; };
  ipv6 { import all; export filter to_frr; next hop address 2001:db8:0:1::1; };
}
EOF
  } >"$WORK/$B.conf"

  {
    frr_common $F
    cat <<'EOF'
router bgp 65002
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 192.0.2.1 remote-as 65001
 neighbor 192.0.2.1 passive
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 2
 neighbor 192.0.2.1 advertisement-interval 0
 !
 address-family ipv4 unicast
  network 198.51.100.0/26 route-map A4-COMM
  network 198.51.100.64/26 route-map A4-LARGE
  network 198.51.100.128/26 route-map A4-EXT
  network 198.51.100.192/27
  network 198.51.100.224/27 route-map A4-COMM
  neighbor 192.0.2.1 activate
  neighbor 192.0.2.1 route-map OUT4 out
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:200::/48 route-map A6-MIX
  network 2001:db8:201::/48
  network 2001:db8:202::/48
  neighbor 192.0.2.1 activate
  neighbor 192.0.2.1 route-map NH6 out
 exit-address-family
!
route-map A4-COMM permit 10
 set community 65002:100 65002:200 65535:666
 set metric 100
 set origin igp
!
route-map A4-LARGE permit 10
 set large-community 65002:1:1 65002:2:2
 set as-path prepend 65002 65002 65002
 set origin egp
!
route-map A4-EXT permit 10
 set extcommunity rt 65002:10 65002:11
 set extcommunity soo 65002:99
 set as-path prepend 64600
 set metric 5
!
route-map A6-MIX permit 10
 set community 65002:6
 set large-community 65002:6:6
 set extcommunity rt 65002:6
 set metric 66
!
! do not echo BIRD's routes back to it (FRR would, and BIRD drops them as AS loops)
bgp as-path access-list NOT-BIRD seq 5 deny _65001_
bgp as-path access-list NOT-BIRD seq 10 permit .*
!
route-map OUT4 permit 10
 match as-path NOT-BIRD
!
route-map NH6 permit 10
 match as-path NOT-BIRD
 set ipv6 next-hop global 2001:db8:0:1::2
!
EOF
  } >"$WORK/$F.conf"

  start_capture $S bwcap-a-bird va-bird
  start_frr $F bwcap-a-frr 192.0.2.2
  start_bird $B bwcap-a-bird
  wait_bird_established $B frr
  wait_bird_imported $B frr 8
  wait_frr_pfx $F 192.0.2.1 ipv4 5
  wait_frr_pfx $F 192.0.2.1 ipv6 4
  sleep $KEEPALIVE_WAIT
  log "$S: withdrawing a few prefixes on both sides"
  birdc_ $B disable s4w >/dev/null
  birdc_ $B disable s6w >/dev/null
  vtysh_conf $F "router bgp 65002" "address-family ipv4 unicast" \
    "no network 198.51.100.224/27" "exit-address-family" \
    "address-family ipv6 unicast" "no network 2001:db8:202::/48"
  sleep 2
  log "$S: BIRD sends Cease (administrative shutdown, with a shutdown message)"
  birdc_ $B disable frr '"bwcap: end of capture"' >/dev/null
  sleep 1
  stop_capture $S
  stop_pidfile "$WORK/pids/$B.pid"
  stop_pidfile "$WORK/pids/$F.pid"
  python3 "$PY" extract "$WORK/$S.pcap" \
    --map "192.0.2.1=$OUT/$S.bird2.bgp" --map "192.0.2.2=$OUT/$S.frr.bgp"
}

# ================================================================== scenario b
# BIRD 2 route reflector (AS 65000, cluster id 1.0.0.1) with a BIRD 2 client and
# an FRR client, each in its own namespace.  IPv4 + IPv6 unicast over IPv4.
scenario_bird2_ibgp_rr() {
  local S=bird2-ibgp-rr R=b-rr B=b-bird F=b-frr
  mkns bwcap-b-rr
  mkns bwcap-b-bird
  mkns bwcap-b-frr
  link bwcap-b-rr vb-rr1 bwcap-b-bird vb-bird
  link bwcap-b-rr vb-rr2 bwcap-b-frr vb-frr
  addr bwcap-b-rr vb-rr1 192.0.2.5/30 2001:db8:0:2::1/64
  addr bwcap-b-bird vb-bird 192.0.2.6/30 2001:db8:0:2::2/64
  addr bwcap-b-rr vb-rr2 192.0.2.9/30 2001:db8:0:3::1/64
  addr bwcap-b-frr vb-frr 192.0.2.10/30 2001:db8:0:3::2/64

  {
    bird_common $R 192.0.2.5
    cat <<'EOF'
protocol static s4 { ipv4; route 198.51.100.0/24 blackhole; }
protocol static s6 { ipv6; route 2001:db8:300::/48 blackhole; }
filter from_rr {
  if source = RTS_STATIC then {
    bgp_community.add((65000,1));
    bgp_local_pref = 50;
  }
  accept;
}
protocol bgp c_bird {
  local 192.0.2.5 as 65000;
  neighbor 192.0.2.6 as 65000;
  direct;
  rr client;
  rr cluster id 1.0.0.1;
  hold time 9;
  keepalive time 3;
  connect delay time 1;
  connect retry time 2;
  ipv4 { import all; export filter from_rr; gateway direct; };
  ipv6 { import all; export filter from_rr; gateway direct; next hop address 2001:db8:0:2::1; };
}
protocol bgp c_frr {
  local 192.0.2.9 as 65000;
  neighbor 192.0.2.10 as 65000;
  direct;
  rr client;
  rr cluster id 1.0.0.1;
  hold time 9;
  keepalive time 3;
  connect delay time 1;
  connect retry time 2;
  ipv4 { import all; export filter from_rr; gateway direct; };
  ipv6 { import all; export filter from_rr; gateway direct; next hop address 2001:db8:0:3::1; };
}
EOF
  } >"$WORK/$R.conf"

  {
    bird_common $B 192.0.2.6
    cat <<'EOF'
protocol static s4 {
  ipv4;
  route 203.0.113.0/25 blackhole;
  route 203.0.113.128/25 blackhole;
}
protocol static s6 { ipv6; route 2001:db8:110::/48 blackhole; }
filter to_rr {
  if source != RTS_STATIC then reject;
  if net = 203.0.113.0/25 then {
    bgp_local_pref = 200;
    bgp_med = 10;
    bgp_community.add((65000,110));
  }
  if net = 203.0.113.128/25 then {
    bgp_large_community.add((65000,128,1));
    bgp_ext_community.add((rt,65000,128));
  }
  accept;
}
protocol bgp reflector {
  local 192.0.2.6 as 65000;
  neighbor 192.0.2.5 as 65000;
  passive on;
  hold time 9;
  keepalive time 3;
  ipv4 { import all; export filter to_rr; };
  ipv6 { import all; export filter to_rr; next hop address 2001:db8:0:2::2; };
}
EOF
  } >"$WORK/$B.conf"

  {
    frr_common $F
    cat <<'EOF'
router bgp 65000
 bgp router-id 192.0.2.10
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 192.0.2.9 remote-as 65000
 neighbor 192.0.2.9 passive
 neighbor 192.0.2.9 timers 3 9
 neighbor 192.0.2.9 timers connect 2
 neighbor 192.0.2.9 advertisement-interval 0
 !
 address-family ipv4 unicast
  network 198.51.100.0/25 route-map LP
  network 198.51.100.128/25
  neighbor 192.0.2.9 activate
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:210::/48 route-map LP
  neighbor 192.0.2.9 activate
  neighbor 192.0.2.9 route-map NH6 out
 exit-address-family
!
route-map LP permit 10
 set local-preference 300
 set community 65000:210
 set metric 21
!
route-map NH6 permit 10
 set ipv6 next-hop global 2001:db8:0:3::2
!
EOF
  } >"$WORK/$F.conf"

  start_capture $S-1 bwcap-b-rr vb-rr1
  start_capture $S-2 bwcap-b-rr vb-rr2
  start_bird $B bwcap-b-bird
  start_frr $F bwcap-b-frr 192.0.2.10
  start_bird $R bwcap-b-rr
  wait_bird_established $R c_bird
  wait_bird_established $R c_frr
  wait_bird_imported $R c_bird 3
  wait_bird_imported $R c_frr 3
  wait_bird_imported $B reflector 5 # 2 RR-originated + 3 reflected from FRR
  wait_frr_pfx $F 192.0.2.9 ipv4 3
  wait_frr_pfx $F 192.0.2.9 ipv6 2
  sleep $KEEPALIVE_WAIT
  log "$S: RR sends Cease to both clients"
  birdc_ $R disable c_bird >/dev/null
  birdc_ $R disable c_frr >/dev/null
  sleep 1
  stop_capture $S-1
  stop_capture $S-2
  stop_pidfile "$WORK/pids/$R.pid"
  stop_pidfile "$WORK/pids/$B.pid"
  stop_pidfile "$WORK/pids/$F.pid"
  python3 "$PY" extract "$WORK/$S-1.pcap" \
    --map "192.0.2.5=$OUT/$S.rr-to-bird2.bgp" --map "192.0.2.6=$OUT/$S.bird2-client.bgp"
  python3 "$PY" extract "$WORK/$S-2.pcap" \
    --map "192.0.2.9=$OUT/$S.rr-to-frr.bgp" --map "192.0.2.10=$OUT/$S.frr-client.bgp"
}

# ================================================================== scenario c
# BIRD 2 <-> FRR iBGP (AS 65000) with ADD-PATH send+receive for IPv4 and IPv6.
# BIRD has two routes for some prefixes (two static protocols originate them with
# different attributes) and, with ADD-PATH tx, announces both.
scenario_addpath() {
  local S=addpath B=c-bird F=c-frr
  mkns bwcap-c-bird
  mkns bwcap-c-frr
  link bwcap-c-bird vc-bird bwcap-c-frr vc-frr
  addr bwcap-c-bird vc-bird 192.0.2.13/30 2001:db8:0:4::1/64
  addr bwcap-c-frr vc-frr 192.0.2.14/30 2001:db8:0:4::2/64

  {
    bird_common $B 192.0.2.13
    cat <<'EOF'
protocol static pa4 {
  ipv4;
  route 203.0.113.0/25 blackhole;
  route 203.0.113.128/25 blackhole;
}
protocol static pb4 {
  ipv4;
  route 203.0.113.0/25 blackhole;
  route 203.0.113.128/26 blackhole;
}
protocol static pa6 {
  ipv6;
  route 2001:db8:120::/48 blackhole;
  route 2001:db8:121::/48 blackhole;
}
protocol static pb6 { ipv6; route 2001:db8:120::/48 blackhole; }
filter to_frr {
  if source != RTS_STATIC then reject;
  if proto = "pb4" || proto = "pb6" then {
    bgp_med = 20;
    bgp_local_pref = 90;
    bgp_community.add((65000,2));
  } else {
    bgp_med = 10;
    bgp_community.add((65000,1));
  }
  accept;
}
protocol bgp frr {
  local 192.0.2.13 as 65000;
  neighbor 192.0.2.14 as 65000;
  hold time 9;
  keepalive time 3;
  connect delay time 1;
  connect retry time 2;
  ipv4 { add paths on; import all; export filter to_frr; };
  ipv6 { add paths on; import all; export filter to_frr; next hop address 2001:db8:0:4::1; };
}
EOF
  } >"$WORK/$B.conf"

  {
    frr_common $F
    cat <<'EOF'
router bgp 65000
 bgp router-id 192.0.2.14
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 192.0.2.13 remote-as 65000
 neighbor 192.0.2.13 passive
 neighbor 192.0.2.13 timers 3 9
 neighbor 192.0.2.13 timers connect 2
 neighbor 192.0.2.13 advertisement-interval 0
 !
 address-family ipv4 unicast
  network 198.51.100.0/25 route-map C
  network 198.51.100.128/25
  neighbor 192.0.2.13 activate
  neighbor 192.0.2.13 addpath-tx-all-paths
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:220::/48 route-map C
  neighbor 192.0.2.13 activate
  neighbor 192.0.2.13 addpath-tx-all-paths
  neighbor 192.0.2.13 route-map NH6 out
 exit-address-family
!
route-map C permit 10
 set community 65000:220
 set local-preference 120
!
route-map NH6 permit 10
 set ipv6 next-hop global 2001:db8:0:4::2
!
EOF
  } >"$WORK/$F.conf"

  start_capture $S bwcap-c-bird vc-bird
  start_frr $F bwcap-c-frr 192.0.2.14
  start_bird $B bwcap-c-bird
  wait_bird_established $B frr
  wait_bird_imported $B frr 3
  wait_frr_pfx $F 192.0.2.13 ipv4 4
  wait_frr_pfx $F 192.0.2.13 ipv6 3
  sleep $KEEPALIVE_WAIT
  log "$S: withdrawing one of the two paths of 203.0.113.0/25 (BIRD disables pb4)"
  birdc_ $B disable pb4 >/dev/null
  sleep 2
  log "$S: FRR sends Cease (neighbor shutdown with message)"
  vtysh_conf $F "router bgp 65000" "neighbor 192.0.2.13 shutdown message bwcap: addpath done"
  sleep 1
  stop_capture $S
  stop_pidfile "$WORK/pids/$B.pid"
  stop_pidfile "$WORK/pids/$F.pid"
  python3 "$PY" extract "$WORK/$S.pcap" \
    --map "192.0.2.13=$OUT/$S.bird2.bgp" --map "192.0.2.14=$OUT/$S.frr.bgp"
}

# ================================================================== scenario d
# FRR (AS 65004) <-> BIRD 2 (AS 65003), eBGP over IPv6 only, IPv4 unicast with
# IPv6 next hops (RFC 8950 extended next hop) plus IPv6 unicast.
scenario_frr_extnh() {
  local S=frr-extnh B=d-bird F=d-frr
  mkns bwcap-d-frr
  mkns bwcap-d-bird
  link bwcap-d-frr vd-frr bwcap-d-bird vd-bird
  addr bwcap-d-frr vd-frr 2001:db8:0:5::1/64
  addr bwcap-d-bird vd-bird 2001:db8:0:5::2/64

  {
    frr_common $F
    cat <<'EOF'
router bgp 65004
 bgp router-id 192.0.2.254
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 2001:db8:0:5::2 remote-as 65003
 neighbor 2001:db8:0:5::2 passive
 neighbor 2001:db8:0:5::2 capability extended-nexthop
 neighbor 2001:db8:0:5::2 timers 3 9
 neighbor 2001:db8:0:5::2 timers connect 2
 neighbor 2001:db8:0:5::2 advertisement-interval 0
 !
 address-family ipv4 unicast
  network 198.51.100.0/24 route-map D
  network 198.51.100.0/25
  neighbor 2001:db8:0:5::2 activate
  neighbor 2001:db8:0:5::2 route-map OUT out
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:230::/48 route-map D
  neighbor 2001:db8:0:5::2 activate
  neighbor 2001:db8:0:5::2 route-map OUT out
 exit-address-family
!
! do not echo BIRD's routes back to it
bgp as-path access-list NOT-BIRD seq 5 deny _65003_
bgp as-path access-list NOT-BIRD seq 10 permit .*
!
route-map OUT permit 10
 match as-path NOT-BIRD
!
route-map D permit 10
 set community 65004:1
 set metric 40
!
EOF
  } >"$WORK/$F.conf"

  {
    bird_common $B 192.0.2.253
    cat <<'EOF'
protocol static s4 {
  ipv4;
  route 203.0.113.0/24 blackhole;
  route 203.0.113.0/28 blackhole;
}
protocol static s6 { ipv6; route 2001:db8:130::/48 blackhole; }
protocol bgp frr {
  local 2001:db8:0:5::2 as 65003;
  neighbor 2001:db8:0:5::1 as 65004;
  hold time 9;
  keepalive time 3;
  connect delay time 1;
  connect retry time 2;
  ipv4 { extended next hop on; import all; export where source = RTS_STATIC; };
  ipv6 { import all; export where source = RTS_STATIC; };
}
EOF
  } >"$WORK/$B.conf"

  start_capture $S bwcap-d-bird vd-bird
  start_frr $F bwcap-d-frr 2001:db8:0:5::1
  start_bird $B bwcap-d-bird
  wait_bird_established $B frr
  wait_bird_imported $B frr 3
  wait_frr_pfx $F 2001:db8:0:5::2 ipv4 2
  wait_frr_pfx $F 2001:db8:0:5::2 ipv6 1
  sleep $KEEPALIVE_WAIT
  log "$S: BIRD sends Cease (administrative shutdown)"
  birdc_ $B disable frr >/dev/null
  sleep 1
  stop_capture $S
  stop_pidfile "$WORK/pids/$B.pid"
  stop_pidfile "$WORK/pids/$F.pid"
  python3 "$PY" extract "$WORK/$S.pcap" \
    --map "2001:db8:0:5::1=$OUT/$S.frr.bgp" --map "2001:db8:0:5::2=$OUT/$S.bird2.bgp"
}

# ================================================================== README
write_readme() {
  local bird_v frr_v
  bird_v=$(bird --version 2>&1 | head -1)
  frr_v=$("$BGPD" --version 2>&1 | head -1)
  {
    cat <<EOF
# Captured BGP-4 test vectors

Each \`<scenario>.<sender>.bgp\` is the raw TCP byte stream one speaker sent on one
session, starting with its OPEN: back-to-back BGP messages (16 x 0xff marker, 2-byte
length, type), reassembled in sequence order from a tcpdump capture with retransmits
dropped.  Regenerate with \`sudo tests/scripts/capture-vectors.sh\` (needs root, makes
\`bwcap-*\` network namespaces, documentation addresses only); the lines below the files
list are produced by \`tests/scripts/pcap-to-bgp.py describe\`.

Peers: $bird_v (Debian bird2), FRR $frr_v (Debian frr, \`bgpd -Z\`, no zebra).
All sessions: hold time 9 s, keepalive 3 s, kept up >= ${KEEPALIVE_WAIT} s after routes were
exchanged (so periodic KEEPALIVEs appear), then one side sent a NOTIFICATION Cease.

Scenarios:
- \`bird2-frr-ebgp\`: BIRD 2 AS 65001 (192.0.2.1) <-> FRR AS 65002 (192.0.2.2), eBGP over
  IPv4, IPv4 unicast + IPv6 unicast (MP_REACH, IPv6 next hop via BIRD \`next hop address\`
  / FRR \`set ipv6 next-hop global\`).  Communities (incl. well-known NO_EXPORT and BLACKHOLE), large communities,
  extended communities (RT, RO/SoO), MED, ORIGIN IGP/EGP/INCOMPLETE, AS paths of 1-4 hops
  (incl. a 4-byte ASN).  Mid-session both sides withdraw some prefixes (IPv4 withdrawn
  routes field and MP_UNREACH); then BIRD \`disable\`s the session with an RFC 8203
  shutdown message.
- \`bird2-ibgp-rr\`: BIRD 2 route reflector AS 65000 (192.0.2.5/.9, \`rr client\`,
  \`rr cluster id 1.0.0.1\`) with a BIRD 2 client (192.0.2.6) and an FRR client
  (192.0.2.10), IPv4 + IPv6 unicast.  \`rr-to-*\` files are the reflector's output:
  reflected routes carry ORIGINATOR_ID, CLUSTER_LIST and LOCAL_PREF; the RR's own routes
  carry neither ORIGINATOR_ID nor CLUSTER_LIST.  The RR ends both sessions with Cease
  (BIRD client's first, so \`rr-to-frr\` also withdraws the reflected BIRD-client routes
  just before its Cease).
- \`addpath\`: BIRD 2 (192.0.2.13) <-> FRR (192.0.2.14) iBGP AS 65000, ADD-PATH
  send+receive for IPv4 and IPv6 unicast.  BIRD announces two paths (ids differ) for
  203.0.113.0/25 and 2001:db8:120::/48, then withdraws one of them by path id; FRR sends its
  own routes with path ids, then Cease via \`neighbor shutdown message\`.
- \`frr-extnh\`: FRR AS 65004 (2001:db8:0:5::1) <-> BIRD 2 AS 65003 (2001:db8:0:5::2), eBGP
  over IPv6 only, IPv4 unicast with IPv6 next hops (RFC 8950 extended next hop capability)
  + IPv6 unicast.  BIRD ends the session with Cease.

Files (sizes, per-type message counts, OPEN capabilities, what the UPDATEs contain):

EOF
    local s f peer line
    for f in "$OUT"/*.bgp; do
      s=$(basename "$f")
      case $s in
        *.rr-to-bird2.bgp) peer=${f%.rr-to-bird2.bgp}.bird2-client.bgp ;;
        *.bird2-client.bgp) peer=${f%.bird2-client.bgp}.rr-to-bird2.bgp ;;
        *.rr-to-frr.bgp) peer=${f%.rr-to-frr.bgp}.frr-client.bgp ;;
        *.frr-client.bgp) peer=${f%.frr-client.bgp}.rr-to-frr.bgp ;;
        *.bird2.bgp) peer=${f%.bird2.bgp}.frr.bgp ;;
        *.frr.bgp) peer=${f%.frr.bgp}.bird2.bgp ;;
        *) peer= ;;
      esac
      if [[ -n $peer && -f $peer ]]; then
        line=$(python3 "$PY" describe "$f@$peer")
      else
        line=$(python3 "$PY" describe "$f")
      fi
      printf -- '- `%s`: %s\n' "${line%%: *}" "${line#*: }"
    done
  } >"$OUT/README.md.tmp"
  mv "$OUT/README.md.tmp" "$OUT/README.md"
}

# ================================================================== main
scenarios=("$@")
((${#scenarios[@]})) || scenarios=("${ALL_SCENARIOS[@]}")
mkdir -p "$OUT"
for s in "${scenarios[@]}"; do
  case $s in
    bird2-frr-ebgp) scenario_bird2_frr_ebgp ;;
    bird2-ibgp-rr) scenario_bird2_ibgp_rr ;;
    addpath) scenario_addpath ;;
    frr-extnh) scenario_frr_extnh ;;
    *) die "unknown scenario $s (known: ${ALL_SCENARIOS[*]})" ;;
  esac
  log "$s: done"
done
write_readme
# Verify every file parses as back-to-back BGP messages.
python3 "$PY" check "$OUT"/*.bgp || die "a capture failed to parse"
log "wrote $(ls "$OUT"/*.bgp | wc -l) files to $OUT"
