#!/usr/bin/env bash
# Runs a route reflector and two client nodes of rr-daemon on loopback addresses
# (127.0.0.2-4, port 1179, no root needed), waits until each node has learned the other's
# route through the reflector, prints what they see, and stops everything it started.
#
#   examples/quickstart.sh            (about 10 s after the build)
set -euo pipefail
cd "$(dirname "$0")/.."
# The build needs protoc (etcd-client compiles etcd's .proto files): installed when root.
tests/scripts/install-protoc.sh
cargo build --quiet -p rr-daemon
# Where cargo put it: CARGO_TARGET_DIR when set (relative to the repository root), else target.
bin=${CARGO_TARGET_DIR:-target}/debug/rr-daemon
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

for name in reflector node-3 node-4; do
    "$bin" check --config "examples/quickstart/$name.toml"
    "$bin" --config "examples/quickstart/$name.toml" 2>"$dir/$name.log" &
    pids+=($!)
done

# Bounded wait: 60 one-second polls.
learned() { "$bin" ctl --api "$1:9179" routes 2>/dev/null | grep -q "$2"; }
for _ in $(seq 60); do
    if learned 127.0.0.3 203.0.113.0/24 && learned 127.0.0.4 198.51.100.0/24; then
        echo
        echo "== the reflector's peers"
        "$bin" ctl --api 127.0.0.2:9179 peers
        echo
        echo "== node 127.0.0.4 learned 198.51.100.0/24 from node 127.0.0.3 through the reflector"
        "$bin" ctl --api 127.0.0.4:9179 routes 198.51.100.0/24
        exit 0
    fi
    sleep 1
done
echo "quickstart: routes were not reflected within 60 s; logs:" >&2
tail -n 20 "$dir"/*.log >&2
exit 1
