#!/usr/bin/env bash
# Build-time benchmark: kiln vs Docker 20.10 (BuildKit) vs buildah, cold
# (--no-cache) and warm (everything cached), side by side, with hyperfine.
# Not part of the test suite. Run as root after scripts/setup.sh and
# scripts/services.sh:
#
#     sudo bench/run.sh            # busybox multi-stage + the examples
#     sudo bench/run.sh --quick    # busybox multi-stage only
#
# Env: KILN (binary, default: cargo build --release), RUNS (default 3),
# COLD_RUNS (default 2; the example builds download packages when cold).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/run.sh: run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

quick=no
[[ ${1:-} == --quick ]] && quick=yes
RUNS=${RUNS:-3}
COLD_RUNS=${COLD_RUNS:-2}
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}

if [[ -z ${KILN:-} ]]; then
    cargo build --release -p kiln >&2
    KILN="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
fi
docker=/usr/bin/docker
export DOCKER_BUILDKIT=1

out=$(mktemp -d)
root=$out/kiln-root
# Rebuilding one tag over and over leaves untagged images behind in Docker
# and buildah; remove the ones that were not there before the run.
dangling() { $docker images -qf dangling=true | sort; buildah images -qf dangling=true 2>/dev/null | sed 's/^/buildah:/' | sort; }
dangling >"$out/dangling-before"
cleanup() {
    $docker rmi kiln-bench >/dev/null 2>&1 || true
    buildah rmi kiln-bench >/dev/null 2>&1 || true
    dangling | comm -13 "$out/dangling-before" - | while read -r id; do
        case $id in
            buildah:*) buildah rmi "${id#buildah:}" >/dev/null 2>&1 || true ;;
            *) $docker rmi "$id" >/dev/null 2>&1 || true ;;
        esac
    done
    rm -rf "$out"
}
trap cleanup EXIT

# The same base images for all three: imported into kiln, already in
# Docker, copied from Docker into buildah's storage.
"$KILN" --root "$root" import "$cache/busybox-rootfs.tar" busybox:latest >/dev/null
"$KILN" --root "$root" import "$cache/debian-bookworm-rootfs.tar" debian:bookworm >/dev/null
for img in busybox:latest debian:bookworm; do
    buildah inspect "$img" >/dev/null 2>&1 || buildah pull -q "docker-daemon:$img" >/dev/null
done

cases=("multistage-busybox:bench/multistage-busybox")
if [[ $quick == no ]]; then
    cases+=("go-scratch:examples/go-scratch" "c-static:examples/c-static" "python-venv:examples/python-venv")
fi

results=()
for c in "${cases[@]}"; do
    name=${c%%:*} dir=${c#*:}
    kiln_cmd="$KILN --root $root build --progress plain -t kiln-bench"
    docker_cmd="$docker build --progress plain -t kiln-bench"
    buildah_cmd="buildah bud --quiet --pull=false --layers -t kiln-bench"
    for mode in cold warm; do
        echo "== $name ($mode)" >&2
        if [[ $mode == cold ]]; then
            flags=(--runs "$COLD_RUNS")
            k="$kiln_cmd --no-cache $dir" d="$docker_cmd --no-cache $dir" b="$buildah_cmd --no-cache $dir"
        else
            flags=(--runs "$RUNS" --warmup 1)
            k="$kiln_cmd $dir" d="$docker_cmd $dir" b="$buildah_cmd $dir"
        fi
        json=$out/$name-$mode.json
        hyperfine "${flags[@]}" --export-json "$json" \
            -n kiln "$k" -n docker "$d" -n buildah "$b" >&2
        results+=("$(jq -r --arg c "$name" --arg m "$mode" '
            (.results | map({(.command): .mean}) | add) as $t
            | [$c, $m, $t.kiln, $t.docker, $t.buildah, $t.docker / $t.kiln, $t.buildah / $t.kiln]
            | @tsv' "$json")")
    done
done

echo
printf '%-20s %-5s %9s %9s %9s %14s %15s\n' case mode kiln docker buildah docker/kiln buildah/kiln
for r in "${results[@]}"; do
    IFS=$'\t' read -r c m k d b dk bk <<<"$r"
    printf '%-20s %-5s %8.2fs %8.2fs %8.2fs %13.2fx %14.2fx\n' "$c" "$m" "$k" "$d" "$b" "$dk" "$bk"
done
