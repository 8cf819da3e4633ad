#!/usr/bin/env bash
# Reflector benchmark: the same workload through our daemon and through BIRD 2, one at a
# time, alternating (A B A B ...) so that drift hits both alike. Not part of CI.
#
#   tests/scripts/bench-reflector.sh table PREFIXES RECEIVERS [RUNS]
#   tests/scripts/bench-reflector.sh fabric CLIENTS [RUNS]
#
# Each run gets a network namespace of its own (`bench-<pid>`, deleted afterwards) with a
# veth (d0, its peer d1 in the same namespace) holding 192.0.2.1/24, the reflector on 127.0.0.1:179 and the load tool
# (`bgp-load`, announcing next hops in 192.0.2.0/24 so both reflectors resolve them) on
# 127.0.1.x. One JSON line per run goes to stdout: implementation, workload, the load
# tool's timings, and the reflector's peak RSS (VmHWM) and CPU seconds.
# With BENCH_RAW=DIR, each run's full bgp-load report is kept as DIR/<n>-<impl>.json.
# BENCH_SPREAD_MS=N spreads the clients' first connects over N ms (both implementations):
# BIRD 2 does not take hundreds of simultaneous connects (its accept queue overflows and
# the connections wait for SYN retransmissions), so the fabric comparison needs it.
# BENCH_IMPLS="ours bird2" (the default) chooses the implementations and their order
# within a round; BENCH_IMPLS=ours runs ours alone.
# Needs root, BIRD 2 (`tests/scripts/install-peers.sh`) and release builds:
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
[[ " ${BENCH_IMPLS:-bird2} " != *" bird2 "* ]] || command -v bird >/dev/null || { echo "bench-reflector.sh: BIRD 2 missing: tests/scripts/install-peers.sh" >&2; exit 2; }

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
    esac
    sleep 1
    local args
    if [ "$mode" = table ]; then
        args=(table --prefixes "$n" --receivers "$k" --withdraw)
    else
        args=(fabric --clients "$k" --flap)
    fi
    local out rc=0
    out=$(ip netns exec "$ns" "$load" "${args[@]}" --target 127.0.0.1:179 --source 127.0.1.1 \
        --next-hop 192.0.2.100 --connect-spread-ms "${BENCH_SPREAD_MS:-0}" --timeout 300 \
        2>"$work/load.err") || rc=$?
    # The reflector is the only process of that name in the namespace.
    local child
    child=$(ip netns pids "$ns" | while read -r p; do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$( [ "$impl" = ours ] && echo rr-daemon || echo bird)" ]; then echo "$p"; fi
    done | head -n1)
    local hwm=null cpu=null
    if [ -n "$child" ]; then
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$child/status")
        cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$child/stat")
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    ip netns del "$ns"
    if [ -n "${BENCH_RAW:-}" ]; then
        mkdir -p "$BENCH_RAW"
        seq_no=$((seq_no + 1))
        printf '%s\n' "$out" >"$BENCH_RAW/$seq_no-$impl.json"
    fi
    python3 - "$impl" "$rc" "$hwm" "$cpu" "$out" <<'PY'
import json, sys
impl, rc, hwm, cpu, out = sys.argv[1:]
try:
    r = json.loads(out)
except ValueError:
    r = {"ok": False, "errors": ["no JSON from bgp-load"]}
line = {"impl": impl, "ok": r.get("ok"), "exit": int(rc),
        "connect_spread_ms": int(__import__("os").environ.get("BENCH_SPREAD_MS", "0")),
        "vmhwm_kib": None if hwm == "null" else int(hwm),
        "cpu_s": None if cpu == "null" else float(cpu),
        "sessions_up_s": r.get("sessions_up_s")}
if r.get("mode") == "table":
    line.update(prefixes=r.get("prefixes"), receivers=r.get("receivers"),
                announce_s=(r.get("announce") or {}).get("all_complete_s"),
                withdraw_s=(r.get("withdraw") or {}).get("all_complete_s"))
else:
    flap = r.get("flap") or {}
    line.update(clients=r.get("clients"), all_complete_s=r.get("all_complete_s"),
                flap_reestablished_s=flap.get("reestablished_s"),
                flap_all_updated_s=flap.get("all_updated_s"))
if not r.get("ok"):
    line["errors"] = (r.get("errors") or [])[:3]
print(json.dumps(line))
PY
}

seq_no=0
for _ in $(seq "$runs"); do
    for impl in ${BENCH_IMPLS:-ours bird2}; do
        one "$impl"
    done
done
