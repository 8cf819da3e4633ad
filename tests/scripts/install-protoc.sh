#!/usr/bin/env bash
# Makes sure the protobuf compiler is there for the build: `rr-daemon agent` speaks etcd v3
# through the etcd-client crate, whose build script compiles etcd's .proto files with
# `protoc` and needs protobuf's well-known types (google/protobuf/*.proto).
#
#   tests/scripts/install-protoc.sh     (root installs Debian's protobuf-compiler and
#                                        libprotobuf-dev when missing; otherwise it says how)
#
# Idempotent. A `protoc` given in PROTOC is used as it is.
set -euo pipefail

log() { printf '[install-protoc] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have() {
    local protoc=${PROTOC:-$(command -v protoc || true)}
    [[ -n $protoc && -x $protoc ]] || return 1
    # The well-known types: beside a vendored protoc (../include), or the system's.
    [[ -n ${PROTOC:-} ]] && return 0
    [[ -f /usr/include/google/protobuf/descriptor.proto ]]
}

have && exit 0
if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    log "installing protobuf-compiler and libprotobuf-dev"
    apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >&2 ||
        { apt-get update -qq >&2 &&
            apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >&2; } ||
        die "cannot install protobuf-compiler and libprotobuf-dev with apt-get"
    have || die "protoc or google/protobuf/descriptor.proto still missing after the install"
else
    die "the build needs protoc and protobuf's well-known types: run this script as root (Debian: apt-get install protobuf-compiler libprotobuf-dev), or set PROTOC"
fi
