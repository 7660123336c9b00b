#!/usr/bin/env bash
# Starts the real components the tests talk to, unless already up:
#   dockerd                          (Docker 20.10 with BuildKit)
#   registry on 127.0.0.1:5000       (CNCF distribution, open)
#   registry on 127.0.0.1:5001       (htpasswd basic auth: kiln / kiln-secret)
# and loads the locally made base images into Docker under the names the
# tests and examples use (busybox:latest, debian:bookworm).
set -euo pipefail

CACHE=${KILN_TEST_CACHE:-/var/cache/kiln-test}
RUN=${KILN_TEST_RUN:-/run/kiln-test}
mkdir -p "$RUN"

wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "services: $what did not come up" >&2; return 1
}

if ! /usr/bin/docker info >/dev/null 2>&1; then
    echo "services: starting dockerd"
    nohup dockerd >"$RUN/dockerd.log" 2>&1 &
    wait_for dockerd /usr/bin/docker info || { tail -20 "$RUN/dockerd.log"; exit 1; }
fi

start_registry() { # port, auth(yes/no)
    local port=$1 auth=$2 dir="$RUN/registry-$1"
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0
    [[ $auth == yes ]] && curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null | grep -q 401 && return 0
    mkdir -p "$dir/data"
    {
        echo "version: 0.1"
        echo "log: {level: warn}"
        echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
        echo "http: {addr: 127.0.0.1:$port}"
        if [[ $auth == yes ]]; then
            htpasswd -Bbn kiln kiln-secret >"$dir/htpasswd"
            echo "auth: {htpasswd: {realm: kiln-test, path: $dir/htpasswd}}"
        fi
    } >"$dir/config.yml"
    echo "services: starting registry on 127.0.0.1:$port (auth: $auth)"
    nohup docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    wait_for "registry :$port" curl -sS -o /dev/null "http://127.0.0.1:$port/v2/" || { tail "$dir/log"; exit 1; }
}
start_registry 5000 no
start_registry 5001 yes

import_base() { # name, tar
    /usr/bin/docker image inspect "$1" >/dev/null 2>&1 && return 0
    echo "services: docker import $1"
    /usr/bin/docker import "$2" "$1" >/dev/null
}
import_base busybox:latest "$CACHE/busybox-rootfs.tar"
import_base debian:bookworm "$CACHE/debian-bookworm-rootfs.tar"
echo "services: up"
