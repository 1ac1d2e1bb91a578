#!/usr/bin/env bash
# Builds the disk_usage handler (JavaScript) into OUT_DIR/disk_usage.wasm.
#
#   build.sh OUT_DIR
#
# The WIT it builds against is the first of: a wit/ directory beside this
# script, $SLUICE_WIT_DIR, the wit/ of the sluice repository this example
# sits in. The build tools (jco and componentize-js, pinned in package.json
# and package-lock.json) are installed with `npm ci`, the first time, under
# $SLUICE_TOOLS (default: target/plugin-tools in the sluice repository, or
# ~/.cache/sluice/plugin-tools outside it).
#
# SLUICE_PLUGIN_DEBUG=1 keeps stdio, so that console.log and uncaught errors
# reach sluice's log; by default the component imports no WASI at all.
set -euo pipefail

die() {
  echo "build.sh: $*" >&2
  exit 1
}

[[ $# -eq 1 ]] || die "usage: build.sh OUT_DIR"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$here/../../../.."
in_repo=false
if [[ -f $repo/wit/plugin.wit && -f $repo/Cargo.toml ]]; then
  repo="$(cd "$repo" && pwd)"
  in_repo=true
fi

# The WIT package of the plugin world.
if [[ -d $here/wit ]]; then
  wit="$here/wit"
elif [[ -n ${SLUICE_WIT_DIR:-} ]]; then
  wit="$SLUICE_WIT_DIR"
elif $in_repo; then
  wit="$repo/wit"
else
  die "no WIT to build against: put it in $here/wit or set SLUICE_WIT_DIR"
fi
[[ -d $wit ]] || die "the WIT directory $wit does not exist"
wit="$(cd "$wit" && pwd)"

# The tools: an `npm ci` of this example's lock file, in a directory named
# after it, so that a change of the pins makes a fresh one.
if $in_repo; then
  tools="${SLUICE_TOOLS:-$repo/target/plugin-tools}"
else
  tools="${SLUICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/plugin-tools}"
fi
mkdir -p "$tools"
tools="$(cd "$tools" && pwd)"
command -v node >/dev/null 2>&1 || die "node not found: this build needs Node.js 20.19 or later, with npm"
command -v npm >/dev/null 2>&1 || die "npm not found: this build needs Node.js 20.19 or later, with npm"
lock_id="$(node -e '
  const { createHash } = require("node:crypto");
  const { readFileSync } = require("node:fs");
  const hash = createHash("sha256");
  for (const file of process.argv.slice(1)) hash.update(readFileSync(file));
  console.log(hash.digest("hex").slice(0, 12));
' "$here/package.json" "$here/package-lock.json")"
node_tools="$tools/js-$lock_id"
if [[ ! -f $node_tools/.installed ]]; then
  echo "build.sh: installing the tools of $here/package-lock.json into $node_tools" >&2
  rm -rf "$node_tools"
  mkdir -p "$node_tools"
  cp "$here/package.json" "$here/package-lock.json" "$node_tools/"
  (cd "$node_tools" && npm ci --no-audit --no-fund --loglevel=error) ||
    die "could not install the pinned tools of $here/package-lock.json"
  touch "$node_tools/.installed"
fi

# Every WASI feature the engine would import is left out (no stdio, clocks,
# random numbers, outgoing HTTP or incoming fetch events), unless debugging.
if [[ ${SLUICE_PLUGIN_DEBUG:-} == 1 ]]; then
  disable=(clocks random http fetch-event)
else
  disable=(all)
fi

mkdir -p "$1"
out="$(cd "$1" && pwd)/disk_usage.wasm"
trap 'rm -f "$out.partial"' EXIT
"$node_tools/node_modules/.bin/jco" componentize "$here/disk_usage.js" \
  --wit "$wit" --world-name plugin --disable "${disable[@]}" --out "$out.partial"
mv "$out.partial" "$out"
echo "build.sh: built $out" >&2
