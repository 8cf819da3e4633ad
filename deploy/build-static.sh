#!/usr/bin/env bash
# Builds the static, stripped release binary of rr-daemon, with its manual pages and shell
# completions beside it, and prints the binary's path as the last line of output.
#
#   deploy/build-static.sh            -> <target dir>/x86_64-unknown-linux-gnu/release/rr-daemon
#
# Static through glibc's static libraries (`-C target-feature=+crt-static` on the host's
# gnu target: no other target or toolchain needs fetching). Next to the binary:
#   man/man1/rr-daemon*.1                         (rr-daemon man --dir)
#   completions/rr-daemon.bash, _rr-daemon, rr-daemon.fish
# Environment: CARGO_TARGET_DIR as usual; RR_COMMIT names the commit when there is no .git
# (a container build); PREFIX=/usr/local also installs binary, pages and completions there.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-static.sh: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs; Rust $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) or newer)"
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
    *-linux-gnu) ;;
    *) die "needs a *-linux-gnu host toolchain, this one is $host" ;;
esac
# glibc's static archives (Debian: libc6-dev). A fresh machine may lack them.
libc_a=$(cc -print-file-name=libc.a 2>/dev/null || true)
if [ ! -f "$libc_a" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q libc6-dev >&2 || { apt-get update -q >&2 && apt-get install -y -q libc6-dev >&2; }
    else
        die "glibc's static libraries are missing (install libc6-dev or glibc-static)"
    fi
fi

# protoc for etcd-client's build script (installed when root, else the script says how).
tests/scripts/install-protoc.sh

# --target keeps the flag off build scripts and proc-macros, which must stay dynamic.
# Stripped and without debug info here only: the workspace's release profile keeps both.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
CARGO_PROFILE_RELEASE_STRIP=symbols \
CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo build --release --locked -p rr-daemon --bin rr-daemon --target "$host" >&2

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/$host/release"
bin="$out/rr-daemon"
[ -x "$bin" ] || die "no binary at $bin"

# Static: no program interpreter, no shared library needed.
if command -v readelf >/dev/null; then
    if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
        die "$bin is dynamically linked"
    fi
    if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
        die "$bin needs shared libraries"
    fi
fi
"$bin" --version >&2 || die "$bin does not run"

rm -rf "$out/man" "$out/completions"
mkdir -p "$out/man/man1" "$out/completions"
"$bin" man --dir "$out/man/man1"
"$bin" completions bash >"$out/completions/rr-daemon.bash"
"$bin" completions zsh >"$out/completions/_rr-daemon"
"$bin" completions fish >"$out/completions/rr-daemon.fish"

if [ -n "${PREFIX:-}" ]; then
    install -D -m 0755 "$bin" "$PREFIX/bin/rr-daemon"
    install -d "$PREFIX/share/man/man1"
    install -m 0644 "$out"/man/man1/*.1 "$PREFIX/share/man/man1/"
    install -D -m 0644 "$out/completions/rr-daemon.bash" "$PREFIX/share/bash-completion/completions/rr-daemon"
    install -D -m 0644 "$out/completions/_rr-daemon" "$PREFIX/share/zsh/site-functions/_rr-daemon"
    install -D -m 0644 "$out/completions/rr-daemon.fish" "$PREFIX/share/fish/vendor_completions.d/rr-daemon.fish"
    echo "installed under $PREFIX" >&2
fi

ls -l "$bin" >&2
echo "$bin"
