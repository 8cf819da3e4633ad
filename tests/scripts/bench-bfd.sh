#!/usr/bin/env bash
# The daemon's CPU with N (default 1,000) BFD sessions at 300 ms x 3 to raw clients
# (bfd-load), over 60 s, release build. Two namespaces of its own (bfdrel-*-PID), removed
# on exit. As root, after:
#   cargo build --release -p interop-tests --bin speaker --bin bfd-load
#   sudo [N=1000] tests/scripts/bench-bfd.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=${CARGO_TARGET_DIR:-$HERE/../../target}/release
N=${N:-1000}
RR=bfdrel-rr-$$; CL=bfdrel-cl-$$; W=$(mktemp -d /tmp/bfdrel.XXXX)
cleanup() { [[ -n ${DPID:-} ]] && kill "$DPID" 2>/dev/null || true; [[ -n ${LPID:-} ]] && kill "$LPID" 2>/dev/null || true; sleep 0.5; ip netns del "$RR" 2>/dev/null || true; ip netns del "$CL" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$RR"; ip netns add "$CL"
ip -n "$RR" link set lo up; ip -n "$CL" link set lo up
ip link add bfdr0 netns "$RR" type veth peer name bfdr1 netns "$CL"
ip -n "$RR" addr add 10.80.0.1/24 dev bfdr0; ip -n "$RR" link set bfdr0 up
ip -n "$CL" addr add 10.80.0.2/24 dev bfdr1; ip -n "$CL" link set bfdr1 up
ip -n "$CL" addr add 10.81.0.1/16 dev lo
ip -n "$RR" route add 10.81.0.0/16 via 10.80.0.2
{
  printf '[speaker]\nasn = 64512\nrouter_id = "10.80.0.1"\nlisten = []\n[api]\nlisten = "127.0.0.1:9179"\n'
  printf '[[peer_group]]\nname = "nodes"\nasn = 64512\npassive = true\nbfd = { interval = 300, multiplier = 3 }\n'
  for i in $(seq 0 $((N-1))); do
    a=$((10*256*256*256 + 81*256*256 + 10 + i))
    printf '[[peer]]\naddress = "%d.%d.%d.%d"\ngroup = "nodes"\n' $((a>>24&255)) $((a>>16&255)) $((a>>8&255)) $((a&255))
  done
} > "$W/rr.toml"
ip netns exec "$RR" "$T/speaker" --config "$W/rr.toml" > "$W/rr.log" 2>&1 & DPID=$!
sleep 2
ip netns exec "$CL" "$T/bfd-load" --peer 10.80.0.1 --first 10.81.0.10 --count "$N" --up-within 60 --hold 70 > "$W/load.json" 2> "$W/load.err" & LPID=$!
for _ in $(seq 1 60); do
  up=$(ip netns exec "$RR" "$T/speaker" ctl --api 127.0.0.1:9179 --json peers | grep -o '"bfd":"up"' | wc -l || true)
  [[ $up -eq $N ]] && break; sleep 1
done
echo "up at our side: $up"
cpu() { awk '{print $14+$15}' /proc/$DPID/stat; }
c0=$(cpu); t0=$(date +%s.%N); sleep 60; c1=$(cpu); t1=$(date +%s.%N)
echo "daemon CPU over $(echo "$t1 - $t0" | bc) s: $(echo "scale=2; ($c1 - $c0) / ($t1 - $t0)" | bc)% of one core (ticks $c0 -> $c1)"
wait "$LPID" || true
cat "$W/load.json"
echo "Down lines in the daemon log: $(grep -c "to=Down" "$W/rr.log" || true); logs in $W"
