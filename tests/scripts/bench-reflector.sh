#!/usr/bin/env bash
# Reflector benchmark: the same workload through our daemon and through BIRD 2, BIRD 1.6
# and FRR, one at a time, alternating (A B C A B C ...) so that drift hits all alike. Not
# part of CI.
#
#   tests/scripts/bench-reflector.sh table PREFIXES RECEIVERS [RUNS]
#   tests/scripts/bench-reflector.sh fabric CLIENTS [RUNS]
#
# Each run gets a network namespace of its own (`bench-<pid>`, deleted afterwards) with a
# veth (d0, its peer d1 in the same namespace) holding 192.0.2.1/24, the reflector on
# 127.0.0.1:179 and the load tool (`bgp-load`, announcing next hops in 192.0.2.0/24 so
# every reflector resolves them) on 127.0.1.x. One JSON line per run goes to stdout:
# implementation, workload, the load tool's timings (`sessions_up_s`: all sessions
# Established, the clients connecting at once unless spread; fabric: `all_complete_s`,
# `flap_reestablished_s`, `flap_all_updated_s`, `flap_client_complete_s`: the flapped
# client holds every other block again, `flap_unchanged`: clients that held its block
# throughout, the withdrawal and the new announcement having met in the reflector, for
# which `flap_all_updated_s` is null when all did), the reflector's peak RSS (`vmhwm_kib`:
# the VmHWM of its processes summed, bgpd and zebra for FRR) and CPU seconds (`cpu_s`,
# user + system of those processes), the load tool's own CPU seconds (`load_cpu_s`: it
# shares the cores with the reflector), the namespace's `somaxconn`, and its TCP counters
# `listen_drops` (connections the listener's queues dropped) and `syn_retrans` (SYNs sent
# again: each is a client that waited a second for its connection).
# With BENCH_RAW=DIR, each run's full bgp-load report is kept as DIR/<n>-<impl>.json.
# BENCH_SPREAD_MS=N spreads the clients' first connects over N ms (every implementation).
# BENCH_IMPLS="ours bird2" (the default) chooses the implementations and their order
# within a round, among ours, bird2, bird16 and frr; BENCH_IMPLS=ours runs ours alone.
# BENCH_TIMEOUT=S bounds each bgp-load run (default 300 s).
# BENCH_PERF=FILE profiles ours during each of its runs (`perf record -e cpu-clock -g`,
# into FILE.<n>, n the run's position in the alternation); BENCH_PERF_CALLGRAPH=dwarf
# unwinds with DWARF instead (whole call chains, larger files).
# Needs root, the peers (`tests/scripts/install-peers.sh`: BIRD 2 and FRR from Debian,
# BIRD 1.6 unpacked under BIRD16_DIR, default target/peers/bird16) and release builds:
#   cargo build --release -p rr-daemon -p interop-tests --bin rr-daemon --bin bgp-load
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:?table PREFIXES RECEIVERS [RUNS] | fabric CLIENTS [RUNS]}
case "$mode" in
    table) n=${2:?prefixes}; k=${3:?receivers}; runs=${4:-3}; sessions=$((k + 1)) ;;
    fabric) k=${2:?clients}; runs=${3:-3}; sessions=$k ;;
    *) echo "bench-reflector.sh: unknown mode $mode" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-target}/release
ours=$target/rr-daemon
load=$target/bgp-load
for exe in "$ours" "$load"; do
    [ -x "$exe" ] || { echo "bench-reflector.sh: build $exe first (see the header)" >&2; exit 2; }
done
impls=${BENCH_IMPLS:-ours bird2}
bird16=${BIRD16_DIR:-target/peers/bird16}/usr/sbin/bird
frr_bgpd=/usr/lib/frr/bgpd
for impl in $impls; do
    case "$impl" in
        ours) ;;
        bird2) bird --version 2>&1 | grep -q 'version 2\.' || { echo "bench-reflector.sh: BIRD 2 missing: tests/scripts/install-peers.sh" >&2; exit 2; } ;;
        bird16) [ -x "$bird16" ] || { echo "bench-reflector.sh: BIRD 1.6 missing at $bird16 (BIRD16_DIR): tests/scripts/install-peers.sh" >&2; exit 2; } ;;
        frr) [ -x "$frr_bgpd" ] || { echo "bench-reflector.sh: FRR missing ($frr_bgpd): tests/scripts/install-peers.sh" >&2; exit 2; } ;;
        *) echo "bench-reflector.sh: unknown implementation $impl in BENCH_IMPLS (ours, bird2, bird16, frr)" >&2; exit 2 ;;
    esac
done

ns=bench-$$
work=$(mktemp -d)
pid=
cleanup() {
    # Command substitutions run this trap too: only the script itself cleans up.
    [ "$BASHPID" = "$$" ] || return 0
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Client addresses: 127.0.1.1 and on (the load tool's --source).
client_addrs() {
    python3 -c "import ipaddress as i; a=int(i.ip_address('127.0.1.1')); [print(i.ip_address(a+j)) for j in range($sessions)]"
}

ours_config() {
    cat <<EOF
[speaker]
asn = 65000
router_id = "192.0.2.1"
listen = ["127.0.0.1:179"]
cluster_id = "1.0.0.1"

[api]
enabled = false

[[peer_group]]
name = "clients"
asn = 65000
rr_client = true
passive = true
EOF
    client_addrs | while read -r a; do printf '\n[[peer]]\naddress = "%s"\ngroup = "clients"\n' "$a"; done
}

# BIRD 2 takes its clients as dynamic neighbours of one range (`neighbor range`): one
# protocol per client in the file made BIRD too slow to answer 2,000 connects at once.
bird_config() {
    cat <<EOF
log "$work/bird.log" { warning, error, fatal };
router id 192.0.2.1;
protocol device {}
protocol direct { ipv4; interface "d0"; }
protocol bgp clients {
    local 127.0.0.1 as 65000;
    neighbor range 127.0.0.0/8 as 65000;
    dynamic name "c";
    rr client;
    rr cluster id 1.0.0.1;
    ipv4 { import all; export where source = RTS_BGP; };
}
EOF
}

# BIRD 1.6 has no dynamic neighbours: one protocol per client from a template, as
# Calico's configuration does. Passive: the clients connect.
bird16_config() {
    cat <<EOF
log "$work/bird.log" { warning, error, fatal };
router id 192.0.2.1;
protocol device {}
protocol direct { interface "d0"; }
template bgp rrc {
    local 127.0.0.1 as 65000;
    passive on;
    rr client;
    rr cluster id 1.0.0.1;
    import all;
    export where source = RTS_BGP;
}
EOF
    local i=0
    client_addrs | while read -r a; do
        i=$((i + 1))
        printf 'protocol bgp c%d from rrc { neighbor %s as 65000; }\n' "$i" "$a"
    done
}

# FRR's bgpd without zebra (-Z), its clients a listen range of one peer group.
frr_config() {
    cat <<EOF
frr defaults traditional
hostname bench
log file $work/frr.log warnings
!
router bgp 65000
 bgp router-id 192.0.2.1
 bgp cluster-id 1.0.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp listen limit 65535
 neighbor clients peer-group
 neighbor clients remote-as 65000
 bgp listen range 127.0.0.0/8 peer-group clients
 address-family ipv4 unicast
  neighbor clients activate
  neighbor clients route-reflector-client
 exit-address-family
!
EOF
}

# The reflector's process names (comm) in the namespace.
procs_of() {
    case "$1" in
        ours) echo rr-daemon ;;
        bird2 | bird16) echo bird ;;
        frr) echo "bgpd zebra" ;;
    esac
}

start_ns() {
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add d0 type veth peer name d1
    ip -n "$ns" link set d1 up
    ip -n "$ns" addr add 192.0.2.1/24 dev d0
    ip -n "$ns" link set d0 up
}

# Runs one implementation once; prints its JSON line.
one() {
    local impl=$1
    seq_no=$((seq_no + 1))
    start_ns
    case "$impl" in
        ours)
            ours_config >"$work/rr.toml"
            ip netns exec "$ns" env RUST_LOG=warn "$ours" --config "$work/rr.toml" 2>"$work/ours.log" &
            pid=$!
            ;;
        bird2)
            bird_config >"$work/bird.conf"
            ip netns exec "$ns" bird -f -c "$work/bird.conf" -s "$work/bird.ctl" 2>"$work/bird.err" &
            pid=$!
            ;;
        bird16)
            bird16_config >"$work/bird.conf"
            ip netns exec "$ns" "$bird16" -f -c "$work/bird.conf" -s "$work/bird.ctl" 2>"$work/bird.err" &
            pid=$!
            ;;
        frr)
            frr_config >"$work/frr.conf"
            ip netns exec "$ns" "$frr_bgpd" -Z -S -f "$work/frr.conf" -i "$work/frr.pid" \
                --vty_socket "$work" -l 127.0.0.1 -p 179 -P 0 2>"$work/frr.err" &
            pid=$!
            ;;
    esac
    # Up and listening before the clients come (bounded: 10 s).
    local w
    for w in $(seq 100); do
        ip netns exec "$ns" ss -Hltn 'sport = :179' | grep -q . && break
        sleep 0.1
    done
    sleep 0.5
    local somaxconn
    somaxconn=$(ip netns exec "$ns" cat /proc/sys/net/core/somaxconn)
    local perf=
    if [ -n "${BENCH_PERF:-}" ] && [ "$impl" = ours ]; then
        local chains=(-g)
        [ "${BENCH_PERF_CALLGRAPH:-}" = dwarf ] && chains=(--call-graph dwarf,16384)
        perf record -q -e cpu-clock "${chains[@]}" -o "$BENCH_PERF.$seq_no" -p "$pid" 2>/dev/null &
        perf=$!
        sleep 0.5
    fi
    local args
    if [ "$mode" = table ]; then
        args=(table --prefixes "$n" --receivers "$k" --withdraw)
    else
        args=(fabric --clients "$k" --flap)
    fi
    local out rc=0
    rm -f "$work/load.time"
    out=$(ip netns exec "$ns" /usr/bin/time -f '%U %S' -o "$work/load.time" \
        "$load" "${args[@]}" --target 127.0.0.1:179 --source 127.0.1.1 \
        --next-hop 192.0.2.100 --connect-spread-ms "${BENCH_SPREAD_MS:-0}" \
        --timeout "${BENCH_TIMEOUT:-300}" 2>"$work/load.err") || rc=$?
    # The namespace's TCP counters (clients and reflector alike live in it): connections
    # the listener's queues dropped, and SYNs sent again (each costs its client a second).
    local netstat listen_drops syn_retrans
    netstat=$(ip netns exec "$ns" cat /proc/net/netstat)
    listen_drops=$(awk '$1 == "TcpExt:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["ListenDrops"] }' <<<"$netstat")
    syn_retrans=$(awk '$1 == "TcpExt:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["TCPSynRetrans"] }' <<<"$netstat")
    # The reflector's processes: those of its names in the namespace (the load tool is the
    # only other one).
    local names p comm hwm=0 ticks=0 found=0
    names=" $(procs_of "$impl") "
    for p in $(ip netns pids "$ns"); do
        comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        [[ "$names" == *" $comm "* ]] || continue
        found=1
        hwm=$((hwm + $(awk '/VmHWM/ {print $2}' "/proc/$p/status")))
        ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    local cpu=null
    if [ "$found" = 1 ]; then
        cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')
    else
        hwm=null
    fi
    if [ -n "$perf" ]; then kill -INT "$perf" 2>/dev/null || true; wait "$perf" 2>/dev/null || true; fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    ip netns del "$ns"
    if [ -n "${BENCH_RAW:-}" ]; then
        mkdir -p "$BENCH_RAW"
        printf '%s\n' "$out" >"$BENCH_RAW/$seq_no-$impl.json"
    fi
    local load_cpu=null
    if [ -s "$work/load.time" ]; then
        load_cpu=$(awk 'END {printf "%.2f", $1 + $2}' "$work/load.time")
    fi
    python3 - "$impl" "$rc" "$hwm" "$cpu" "$somaxconn" "$load_cpu" "${listen_drops:-null}" "${syn_retrans:-null}" "$out" <<'PY'
import json, sys
impl, rc, hwm, cpu, somaxconn, load_cpu, listen_drops, syn_retrans, out = sys.argv[1:]
try:
    r = json.loads(out)
except ValueError:
    r = {"ok": False, "errors": ["no JSON from bgp-load"]}
line = {"impl": impl, "ok": r.get("ok"), "exit": int(rc),
        "connect_spread_ms": int(__import__("os").environ.get("BENCH_SPREAD_MS", "0")),
        "vmhwm_kib": None if hwm == "null" else int(hwm),
        "cpu_s": None if cpu == "null" else float(cpu),
        "load_cpu_s": None if load_cpu == "null" else float(load_cpu),
        "somaxconn": int(somaxconn),
        "listen_drops": None if listen_drops == "null" else int(listen_drops),
        "syn_retrans": None if syn_retrans == "null" else int(syn_retrans),
        "sessions_up_s": r.get("sessions_up_s")}
if r.get("mode") == "table":
    line.update(prefixes=r.get("prefixes"), receivers=r.get("receivers"),
                announce_s=(r.get("announce") or {}).get("all_complete_s"),
                withdraw_s=(r.get("withdraw") or {}).get("all_complete_s"))
else:
    flap = r.get("flap") or {}
    line.update(clients=r.get("clients"), all_complete_s=r.get("all_complete_s"),
                flap_reestablished_s=flap.get("reestablished_s"),
                flap_all_updated_s=flap.get("all_updated_s"),
                flap_client_complete_s=flap.get("client_complete_s"),
                flap_unchanged=flap.get("unchanged"))
if not r.get("ok"):
    line["errors"] = (r.get("errors") or [])[:3]
print(json.dumps(line))
PY
}

seq_no=0
for _ in $(seq "$runs"); do
    for impl in $impls; do
        one "$impl"
    done
done
