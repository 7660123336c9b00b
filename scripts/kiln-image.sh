#!/usr/bin/env bash
# Builds the kiln image (images/kiln/Dockerfile): a static musl kiln, then
# kiln itself builds the image from the repository root.
#   scripts/kiln-image.sh [TAG] [--load]    (default tag kiln:latest)
# --load also loads it into Docker. Needs root (a normal kiln build), the
# rustup target x86_64-unknown-linux-musl and musl-tools (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-kiln:latest}
TARGET=x86_64-unknown-linux-musl

rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET
# libseccomp (for the youki runtime) has no musl build in Debian: its static
# glibc build links, with the shim in crates/kiln-exec/shim/fortify.c.
SECCOMP=$(mktemp -d)
trap 'rm -rf "$SECCOMP"' EXIT
cp /usr/lib/x86_64-linux-gnu/libseccomp.a "$SECCOMP/"
CC_x86_64_unknown_linux_musl=musl-gcc LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$SECCOMP \
    cargo build --release --locked --target $TARGET -p kiln
BIN=target/$TARGET/release/kiln
file "$BIN" | grep -q "statically linked" || { echo "kiln-image: $BIN is not static" >&2; exit 1; }

ROOT=${KILN_ROOT:-/var/lib/kiln}
# Without Docker Hub (the test machines), the base comes from setup.sh's cache.
base=${KILN_TEST_CACHE:-/var/cache/kiln-test}/debian-bookworm-rootfs.tar
[[ -f $base ]] && "$BIN" --root "$ROOT" import "$base" debian:bookworm >/dev/null
if [[ ${2:-} == --load ]]; then
    out=$(mktemp -d)
    "$BIN" --root "$ROOT" build -f images/kiln/Dockerfile -t "$TAG" -o type=image -o "type=docker,dest=$out/kiln.tar" .
    docker load -i "$out/kiln.tar"
    rm -rf "$out"
else
    "$BIN" --root "$ROOT" build -f images/kiln/Dockerfile -t "$TAG" .
fi
