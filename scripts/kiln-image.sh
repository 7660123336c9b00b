#!/usr/bin/env bash
# Builds the kiln image (images/kiln/Dockerfile): a static musl kiln, then
# kiln itself builds the image from the repository root.
#   scripts/kiln-image.sh [TAG] [--load]    (default tag kiln:latest)
# --load also loads it into Docker. Needs root (a normal kiln build), and
# what scripts/musl-kiln.sh needs (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-kiln:latest}
BIN=$(scripts/musl-kiln.sh release)
# The Dockerfile COPYs it from the context, the repository root.
[[ $BIN == "$PWD"/* ]] || { echo "kiln-image: $BIN is outside $PWD (CARGO_TARGET_DIR)" >&2; exit 1; }
ARG=(--build-arg "KILN_BIN=${BIN#"$PWD"/}")

ROOT=${KILN_ROOT:-/var/lib/kiln}
# Without Docker Hub (the test machines), the base comes from setup.sh's cache.
base=${KILN_TEST_CACHE:-/var/cache/kiln-test}/debian-bookworm-rootfs.tar
[[ -f $base ]] && "$BIN" --root "$ROOT" import "$base" debian:bookworm >/dev/null
if [[ ${2:-} == --load ]]; then
    out=$(mktemp -d)
    "$BIN" --root "$ROOT" build -f images/kiln/Dockerfile "${ARG[@]}" -t "$TAG" -o type=image -o "type=docker,dest=$out/kiln.tar" .
    docker load -i "$out/kiln.tar"
    rm -rf "$out"
else
    "$BIN" --root "$ROOT" build -f images/kiln/Dockerfile "${ARG[@]}" -t "$TAG" .
fi
