#!/usr/bin/env bash
# The project's whole test suite: lints, unit and property tests, capture goldens, the
# purity check of the three library crates, and a bounded run of every fuzz target.
# Installs what it needs when missing; starts no background process.
#
#   tests/run.sh            everything (what CI runs)
#   FUZZ_SECONDS=N          seconds per fuzz target (default 10; 0 skips running, still builds)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step with the seconds since the start, so that a CI log shows where the time goes.
step() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*"; }

if ! command -v cargo >/dev/null; then
    echo "tests/run.sh: cargo is required (install Rust with rustup)" >&2
    exit 1
fi

step "build tools: protoc (etcd-client's build compiles etcd's .proto files)"
tests/scripts/install-protoc.sh

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet

step "purity: bgp-wire, bgp-fsm and rib depend on no runtime or sockets"
for crate in bgp-wire bgp-fsm rib; do
    if cargo tree -q --locked -p "$crate" -e normal --prefix none | awk '{print $1}' \
        | grep -x -E 'tokio|mio|socket2|async-std'; then
        echo "tests/run.sh: $crate must stay pure (docs/architecture.md)" >&2
        exit 1
    fi
done

step "interop peers: BIRD 2, BIRD 1.6 and FRR"
tests/scripts/install-peers.sh

step "tests"
cargo test --workspace --locked --no-fail-fast

# ---- deploy (issue 15): the static binary and what ships it --------------------------
step "deploy: static binary, the image's contract, manifests, systemd unit"
static=$(deploy/build-static.sh | tail -n 1)
RR_STATIC_BINARY="$static" cargo test --locked -p interop-tests --test deploy_interop
tests/scripts/check-deploy.sh "$static"
# ---------------------------------------------------------------------------------------

step "fuzz targets"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz
fi
# Only stable Rust exists here; cargo-fuzz's nightly flags are allowed by RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build --release --debug-assertions)
seconds=${FUZZ_SECONDS:-10}
if [ "$seconds" -gt 0 ]; then
    for target in $(cd fuzz && cargo fuzz list); do
        corpus=fuzz/corpus/$target
        mkdir -p "$corpus"
        work=$(mktemp -d)
        # Run on a scratch copy so CI never rewrites the committed corpus.
        cp -r "$corpus/." "$work/" 2>/dev/null || true
        (cd fuzz && cargo fuzz run --release --debug-assertions "$target" "$work" -- \
            -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 3)
        rm -rf "$work"
    done
fi

echo
echo "tests/run.sh: all checks passed in ${SECONDS}s"
