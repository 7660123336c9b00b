#!/usr/bin/env bash
# Installs everything kiln's build, tests and examples need on a fresh Debian
# machine, and makes the base images locally (there is no Docker Hub here).
# Idempotent: a second run only checks.
set -euo pipefail

CACHE=${KILN_TEST_CACHE:-/var/cache/kiln-test}
PACKAGES=(docker.io docker-registry runc buildah podman skopeo umoci debootstrap
          busybox-static gcc libseccomp-dev pkg-config apache2-utils jq ca-certificates
          iproute2 hyperfine chromium musl-tools file uidmap)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The static kiln of the kiln image (scripts/musl-kiln.sh, which the tests
# run) needs Rust's musl target besides musl-tools.
export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null ||
    { echo "setup: rustup not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    echo "setup: adding the rustup target x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
fi

mkdir -p "$CACHE"

# busybox: a static busybox with every applet linked, users, CA bundle.
if [[ ! -s $CACHE/busybox-rootfs.tar ]]; then
    echo "setup: making busybox root filesystem"
    d=$(mktemp -d)
    chmod 0755 "$d"
    mkdir -p "$d"/{bin,etc/ssl/certs,tmp,root,proc,dev,sys,home,var}
    chmod 1777 "$d/tmp"
    cp /bin/busybox "$d/bin/busybox"
    for a in $("$d/bin/busybox" --list); do
        [[ $a == busybox ]] || ln -s busybox "$d/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
    printf 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' >"$d/etc/group"
    cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
    tar --numeric-owner --owner=0 --group=0 -C "$d" -cf "$CACHE/busybox-rootfs.tar.tmp" .
    mv "$CACHE/busybox-rootfs.tar.tmp" "$CACHE/busybox-rootfs.tar"
    rm -rf "$d"
fi

# debian:bookworm from debootstrap (about 30 s), with the host's CA bundle so
# HTTPS to package registries works inside containers.
if [[ ! -s $CACHE/debian-bookworm-rootfs.tar ]]; then
    echo "setup: debootstrapping debian bookworm (minbase)"
    d=$(mktemp -d)
    chmod 0755 "$d"
    debootstrap --variant=minbase bookworm "$d" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    mkdir -p "$d/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
    rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/*
    tar --numeric-owner -C "$d" -cf "$CACHE/debian-bookworm-rootfs.tar.tmp" .
    mv "$CACHE/debian-bookworm-rootfs.tar.tmp" "$CACHE/debian-bookworm-rootfs.tar"
    rm -rf "$d"
fi
echo "setup: base root filesystems in $CACHE"
