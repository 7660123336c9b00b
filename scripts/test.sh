#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts dockerd and two
# registries, then runs formatting, lints and every test (root required:
# tests mount overlayfs and start containers).
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) == 0 ]] || { echo "test.sh: run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
bash scripts/services.sh
export KILN_TEST_CACHE=${KILN_TEST_CACHE:-/var/cache/kiln-test}
export KILN_REQUIRE_ALL=1   # tests fail, never skip, when a component is missing

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The kiln image's test (crates/kiln/tests/unprivileged.rs) builds the image
# from this static kiln: a fast-to-compile release (profile musl-test).
scripts/musl-kiln.sh musl-test
cargo test --workspace --locked 2>&1

# The benchmark cannot rot: one repetition of each of its modes on tiny
# inputs, with the kiln the tests just built (times are not asserted).
KILN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kiln" bench/run.sh --smoke
