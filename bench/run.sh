#!/usr/bin/env bash
# Build-time benchmark: kiln vs Docker 20.10 (BuildKit) vs buildah, in one
# interleaved run (bench/compare.py), with medians and ratios. Not part of
# the test suite (its smoke is). Run as root after scripts/setup.sh and
# scripts/services.sh:
#
#     bench/run.sh             # everything; the tables go to $OUT/results.md
#     bench/run.sh --bigctx    # the big-context workload only (1x, 2x, 4x)
#     bench/run.sh --run       # the RUN-bound workloads only
#     bench/run.sh --smoke     # one repetition of each mode on tiny inputs:
#                              # proves the benchmark still runs, times nothing
#
# Workloads:
#   bigctx (bench/bigctx/: 20,000 files / ~200 MB generated deterministically)
#       cold, cached, one file changed, build+push; 2x and 4x contexts cold
#       (kiln's peak RSS must stay flat in the context size)
#   multistage-busybox, go-scratch, c-static, python-venv: RUN-bound builds,
#       cold and cached
#
# Env: KILN (binary, default: cargo build --release), REPS (default 3),
# OUT (results dir, default: a temp dir that is kept).
# It prunes Docker's whole BuildKit build cache first (`docker builder
# prune -af`), so both builders start cold.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/run.sh: run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

what=${1:-all}
REPS=${REPS:-3}
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}
[[ $what == --smoke ]] && REPS=1

if [[ -z ${KILN:-} ]]; then
    cargo build --release -p kiln >&2
    KILN="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
fi
export DOCKER_BUILDKIT=1
OUT=${OUT:-$(mktemp -d /tmp/kiln-bench-XXXX)}
mkdir -p "$OUT"
# Nothing is deleted until the run ends (a context stays until the exit's
# cleanup): ext4 without a journal, as on the bench machine, does not reuse
# an inode for 60 s after its file is deleted, or 360 s while the inode's
# block is dirty (`recently_deleted`), and scans past each such inode on
# every create, so a deletion slows whichever builds create files near it
# next (the next cold kiln build, whose root is beside the context).
# For the same reason, do not start a run within 6 minutes of deleting a
# large tree (an earlier run's cleanup, say).
work=$(mktemp -d)
root=$work/kiln-root
# Rebuilding one tag over and over leaves untagged images behind in Docker
# and buildah; remove the ones that were not there before the run.
# One sorted list (comm needs it): the two outputs concatenated are not.
dangling() {
    { /usr/bin/docker images -qf dangling=true; buildah images -qf dangling=true 2>/dev/null | sed 's/^/buildah:/'; } | LC_ALL=C sort -u
}
dangling >"$work/dangling-before"
# BuildKit starts from an empty build cache, as kiln from an empty --root
# (with earlier runs' cache, Docker's 4x cold took 43 s; after a prune, 24 s).
/usr/bin/docker builder prune -af >/dev/null
cleanup() {
    for t in kiln-bench $(/usr/bin/docker images --format '{{.Repository}}:{{.Tag}}' | grep '/bench-'); do
        /usr/bin/docker rmi "$t" >/dev/null 2>&1 || true
    done
    for t in kiln-bench $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep '/bench-'); do
        buildah rmi "$t" >/dev/null 2>&1 || true
    done
    dangling | LC_ALL=C comm -13 "$work/dangling-before" - | while read -r id; do
        case $id in
            buildah:*) buildah rmi "${id#buildah:}" >/dev/null 2>&1 || true ;;
            *) /usr/bin/docker rmi "$id" >/dev/null 2>&1 || true ;;
        esac
    done
    rm -rf "$work"
}
trap cleanup EXIT

# The same base images for all three: imported into kiln, already in
# Docker, copied from Docker into buildah's storage.
"$KILN" --root "$root" import "$cache/busybox-rootfs.tar" busybox:latest >/dev/null
"$KILN" --root "$root" import "$cache/debian-bookworm-rootfs.tar" debian:bookworm >/dev/null
for img in busybox:latest debian:bookworm; do
    buildah inspect "$img" >/dev/null 2>&1 || buildah pull -q "docker-daemon:$img" >/dev/null
done

compare() { # label ctx modes [extra args]
    local label=$1 ctx=$2 modes=$3; shift 3
    echo "== $label" >&2
    python3 bench/compare.py --kiln "$KILN" --root "$root" --ctx "$ctx" --reps "$REPS" \
        --label "$label" --modes "$modes" --json "$OUT/$label.json" --md "$OUT/results.md" "$@"
}

bigctx() { # label gen-args modes
    local ctx=$work/$1
    python3 bench/bigctx/gen.py "$ctx" $2
    compare "$1" "$ctx" "$3" --change src/pkg0/f3.txt
}

case $what in
    --smoke)
        bigctx bigctx-smoke "--folders 2" cold,cached,changed,push
        compare multistage-busybox bench/multistage-busybox cold,cached
        ;;
    --bigctx | all)
        bigctx bigctx "--scale 1" cold,cached,changed,push
        bigctx bigctx-2x "--scale 2" cold
        bigctx bigctx-4x "--scale 4" cold
        ;;&
    --run | all)
        compare multistage-busybox bench/multistage-busybox cold,cached
        for ex in go-scratch c-static python-venv; do
            compare "$ex" "examples/$ex" cold,cached
        done
        ;;
    --bigctx) ;;
    *) echo "bench/run.sh: unknown argument $what (--smoke, --bigctx, --run)" >&2; exit 2 ;;
esac
echo "bench: tables in $OUT/results.md" >&2
cat "$OUT/results.md"
