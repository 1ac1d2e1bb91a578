#!/usr/bin/env bash
# Builds the disk_usage handler (Python) into OUT_DIR/disk_usage.wasm.
#
#   build.sh OUT_DIR
#
# The WIT it builds against is the first of: a wit/ directory beside this
# script, $SLUICE_WIT_DIR, the wit/ of the sluice repository this example
# sits in. The build tools (componentize-py, pinned in requirements.txt) are
# installed, the first time, into a virtual environment under $SLUICE_TOOLS
# (default: target/plugin-tools in the sluice repository, or
# ~/.cache/sluice/plugin-tools outside it). $PYTHON names the interpreter
# that makes it (default: python3).
#
# SLUICE_PLUGIN_DEBUG=1 keeps WASI, so that print() and tracebacks reach
# sluice's log; by default the component imports no WASI at all.
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

# The tools: a virtual environment named after the pins it holds, so that
# a change of requirements.txt makes a fresh one.
if $in_repo; then
  tools="${SLUICE_TOOLS:-$repo/target/plugin-tools}"
else
  tools="${SLUICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/plugin-tools}"
fi
mkdir -p "$tools"
tools="$(cd "$tools" && pwd)"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 ||
  die "$python not found: this build needs Python 3 (with its venv module) to install componentize-py"
pins="$here/requirements.txt"
pins_id="$("$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:12])' "$pins")"
venv="$tools/python-$pins_id"
if [[ ! -f $venv/.installed ]]; then
  echo "build.sh: installing $(grep -v '^#' "$pins" | xargs) into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" ||
    die "$python could not make a virtual environment (on Debian and Ubuntu: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$pins" ||
    die "could not install the pinned tools from $pins"
  touch "$venv/.installed"
fi

# Every WASI import is replaced by a stub that traps, so that the component
# imports nothing from the host, unless debugging: the app makes no system
# call, and Python's tracebacks on stderr are all that the stubs take away.
stub_wasi=(--stub-wasi)
if [[ ${SLUICE_PLUGIN_DEBUG:-} == 1 ]]; then
  stub_wasi=()
fi

mkdir -p "$1"
out="$(cd "$1" && pwd)/disk_usage.wasm"

# componentize-py runs the app once while it builds (to snapshot it after
# its imports) and leaves a __pycache__ beside it: build from a copy.
work="$(mktemp -d)"
trap 'rm -rf "$work" "$out.partial"' EXIT
cp "$here"/*.py "$work"/

# Only the tools' own environment is visible to the build, so no other
# site-packages is bundled.
cd "$work"
env -u VIRTUAL_ENV -u PYTHONPATH PATH="$venv/bin:$PATH" \
  componentize-py --wit-path "$wit" --world plugin \
  componentize app --python-path "$work" ${stub_wasi[@]+"${stub_wasi[@]}"} --output "$out.partial"
mv "$out.partial" "$out"
echo "build.sh: built $out" >&2
