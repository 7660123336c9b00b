#!/usr/bin/env bash
# Quick start: builds kiln, makes the local base images, then builds every
# example with kiln and runs it. Run as root from anywhere (no sudo needed):
#
#     examples/build-all.sh [EXAMPLE...]     (default: all of them)
#
# KILN_ROOT (default /var/lib/kiln) is kiln's store; KILN, a kiln binary to
# use instead of building one. Images run with
# `kiln run`; where that is unavailable they are loaded into Docker
# (`kiln save | docker load`) and run there.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(go-scratch c-static python-venv builder-pattern source-mounted)
if (($#)); then examples=("$@"); else examples=("${all[@]}"); fi
for ex in "${examples[@]}"; do
    [[ " ${all[*]} " == *" $ex "* ]] || { echo "build-all.sh: no example \"$ex\" (examples: ${all[*]})" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "build-all.sh: run as root (kiln mounts overlayfs and starts containers)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

# Install first: building kiln links libseccomp (libseccomp-dev, pkg-config).
echo "== installing what kiln needs, making the base root filesystems"
bash scripts/setup.sh

if [[ -n ${KILN:-} ]]; then
    kiln_bin=$KILN   # a kiln binary built elsewhere
else
    echo "== building kiln (release)"
    cargo build --release -p kiln
    kiln_bin="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
fi
kiln() { "$kiln_bin" "$@"; }
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}
export KILN_ROOT=${KILN_ROOT:-/var/lib/kiln}
# No Docker Hub here: the bases the examples start FROM are imported.
for base in "busybox:latest busybox-rootfs.tar" "debian:bookworm debian-bookworm-rootfs.tar"; do
    set -- $base
    kiln inspect "$1" >/dev/null 2>&1 || kiln import "$cache/$2" "$1"
done

if kiln run --rm busybox:latest true >/dev/null 2>&1; then
    run_image() { kiln run --rm "$1"; }
else
    echo "== kiln run is unavailable: running the images in Docker"
    bash scripts/services.sh >/dev/null
    run_image() { kiln save "$1" | /usr/bin/docker load -q >/dev/null && /usr/bin/docker run --rm "$1"; }
fi

# Builds write into the example directories (out/, greet): use a copy.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/. "$work/"

# Each example, exactly as its README builds and runs it (in its directory).
go-scratch() {
    kiln build -t go-scratch .
    run_image go-scratch
}
c-static() {
    kiln build -t c-static .
    run_image c-static
}
python-venv() {
    kiln build -t python-venv .
    run_image python-venv
}
builder-pattern() {
    kiln build -f Dockerfile.build -o type=local,dest=out .
    kiln build -t builder-pattern -f Dockerfile out
    run_image builder-pattern
}
source-mounted() {
    kiln build -t golang:local -f toolchain.Dockerfile .
    kiln run --rm -v "$PWD:/src" -w /src golang:local go build -ldflags="-s -w" -o greet .
    kiln build -t source-mounted .
    run_image source-mounted
}

for ex in "${examples[@]}"; do
    echo
    echo "== $ex"
    cd "$work/$ex"
    "$ex"
done

echo
echo "== image sizes"
kiln images
