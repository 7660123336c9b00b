#!/usr/bin/env bash
# The one place that builds the static (musl) kiln, for the kiln image
# (images/kiln/Dockerfile) and its test. Prints the binary's path.
#   scripts/musl-kiln.sh [PROFILE]    (default release; the tests use musl-test)
# Needs the rustup target x86_64-unknown-linux-musl, musl-tools and
# libseccomp-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-release}
TARGET=x86_64-unknown-linux-musl
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

rustup target list --installed | grep -qx $TARGET || rustup target add $TARGET >&2
# libseccomp (for the youki runtime) has no musl build in Debian: its static
# glibc build links, with the shim in crates/kiln-exec/shim/fortify.c. It is
# copied to a fixed directory: the build script's fingerprint includes
# LIBSECCOMP_LIB_PATH, so a new directory each run would rebuild it all.
SECCOMP=$TARGET_DIR/libseccomp-static
mkdir -p "$SECCOMP"
cmp -s /usr/lib/x86_64-linux-gnu/libseccomp.a "$SECCOMP/libseccomp.a" ||
    cp /usr/lib/x86_64-linux-gnu/libseccomp.a "$SECCOMP/"
CC_x86_64_unknown_linux_musl=musl-gcc LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$SECCOMP \
    cargo build --profile "$PROFILE" --locked --target $TARGET -p kiln >&2
BIN=$TARGET_DIR/$TARGET/$PROFILE/kiln
# `file` says "static-pie linked" for a static PIE, "statically linked" otherwise.
file -L "$BIN" | grep -Eq "statically linked|static-pie linked" ||
    { echo "musl-kiln: $BIN is not static: $(file -L "$BIN")" >&2; exit 1; }
echo "$BIN"
