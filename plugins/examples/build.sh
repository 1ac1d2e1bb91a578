#!/usr/bin/env bash
# Builds the example plugins in Python, JavaScript and C (the Rust one is
# built by cargo) into OUT_DIR/<lang>/disk_usage.wasm, each with its own
# build.sh, which installs the pinned tools it lacks on first use.
#
#   plugins/examples/build.sh OUT_DIR [python] [js] [c]
#
# With no language named, builds all three. The tests of
# tests/tests/examples.rs load them from $SLUICE_EXAMPLES_DIR, by default
# target/examples: `plugins/examples/build.sh target/examples`.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: build.sh OUT_DIR [python] [js] [c]" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
shift
langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(python js c)

for lang in "${langs[@]}"; do
  [[ -x $here/$lang/disk_usage/build.sh ]] || { echo "build.sh: no example in $lang" >&2; exit 1; }
  started=$SECONDS
  "$here/$lang/disk_usage/build.sh" "$out/$lang"
  echo "build.sh: $lang example built in $((SECONDS - started)) s" >&2
done
