#!/usr/bin/env bash
# Builds the disk_usage example plugin into OUT_DIR/disk_usage.wasm, a
# WebAssembly component implementing the sluice `plugin` world.
#
#   build.sh OUT_DIR
#
# Needs clang, wasm-ld and a WASI sysroot (Debian: see the README), cargo
# and npm. The pinned wit-bindgen and jco are installed on first use into
# $SLUICE_TOOLS (default: the repository's target/plugin-tools).
#
# The WIT comes from ./wit beside this script when there is one, else from
# $SLUICE_WIT_DIR, else from the repository's wit/.
set -euo pipefail

WIT_BINDGEN_VERSION=0.61.1
# Debian packages that provide the C toolchain for wasm32-wasi.
APT_PACKAGES="clang lld wasi-libc libclang-rt-dev-wasm32"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." 2>/dev/null && pwd || true)"

die() {
  echo "build.sh: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: build.sh OUT_DIR"
mkdir -p "$1"
out_dir="$(cd "$1" && pwd)"

# ---- Inputs ---------------------------------------------------------------

if [ -d "$here/wit" ]; then
  wit="$here/wit"
elif [ -n "${SLUICE_WIT_DIR:-}" ]; then
  wit="$SLUICE_WIT_DIR"
else
  wit="$repo/wit"
fi
[ -f "$wit/plugin.wit" ] || die "no plugin.wit in $wit (set SLUICE_WIT_DIR)"

if [ -n "${SLUICE_TOOLS:-}" ]; then
  tools="$SLUICE_TOOLS"
elif [ -f "$repo/Cargo.toml" ] && [ -d "$repo/wit" ]; then
  tools="$repo/target/plugin-tools"
else
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/plugin-tools"
fi

# ---- The C toolchain (system packages) ------------------------------------

cc="${WASI_CC:-clang}"
target=wasm32-wasi
sysroot_flags=()
[ -z "${WASI_SYSROOT:-}" ] || sysroot_flags=(--sysroot "$WASI_SYSROOT")

missing_toolchain() {
  cat >&2 <<EOF
build.sh: $1
Install the C toolchain for WebAssembly; on Debian or Ubuntu:

  sudo apt-get install -y --no-install-recommends $APT_PACKAGES

(or point WASI_CC at a clang with a wasm32 target, and WASI_SYSROOT at a
wasi-libc sysroot).
EOF
  exit 1
}

command -v "$cc" >/dev/null 2>&1 || missing_toolchain "$cc not found"
command -v wasm-ld >/dev/null 2>&1 || missing_toolchain "wasm-ld not found"
# Each prints the bare file name when it finds no file of that name.
reactor_crt="$("$cc" --target=$target "${sysroot_flags[@]}" -print-file-name=crt1-reactor.o)"
[ -f "$reactor_crt" ] || missing_toolchain "no WASI sysroot (crt1-reactor.o) for $cc"
builtins="$("$cc" --target=$target "${sysroot_flags[@]}" -print-libgcc-file-name)"
[ -f "$builtins" ] || missing_toolchain "no wasm32 compiler-rt builtins for $cc ($builtins)"

# ---- Pinned tools (installed on first use) ----------------------------------

# wit-bindgen, in a directory named after its version.
wit_bindgen_root="$tools/wit-bindgen-cli-$WIT_BINDGEN_VERSION"
wit_bindgen="$wit_bindgen_root/bin/wit-bindgen"
if ! "$wit_bindgen" --version 2>/dev/null | grep -qx "wit-bindgen-cli $WIT_BINDGEN_VERSION"; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found: it is needed to install wit-bindgen"
  echo "build.sh: installing wit-bindgen-cli $WIT_BINDGEN_VERSION into $wit_bindgen_root" >&2
  mkdir -p "$wit_bindgen_root"
  # Only the C generator is needed. Run from the install directory, away
  # from any rust-toolchain.toml of the caller's.
  (cd "$wit_bindgen_root" && cargo install --locked --quiet --version "$WIT_BINDGEN_VERSION" \
    --no-default-features --features c --root "$wit_bindgen_root" wit-bindgen-cli) >&2 ||
    die "could not install wit-bindgen-cli $WIT_BINDGEN_VERSION"
fi

# jco, pinned with all its dependencies by package-lock.json: an `npm ci`
# in a directory named after the lock file, so that new pins get a fresh one.
command -v npm >/dev/null 2>&1 || die "npm not found: it is needed to install jco"
if command -v sha256sum >/dev/null 2>&1; then
  lock_id="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-12)"
else
  lock_id="$(cat "$here/package.json" "$here/package-lock.json" | shasum -a 256 | cut -c1-12)"
fi
node_tools="$tools/c-$lock_id"
jco="$node_tools/node_modules/.bin/jco"
if [ ! -f "$node_tools/.installed" ]; then
  echo "build.sh: installing jco into $node_tools" >&2
  rm -rf "$node_tools"
  mkdir -p "$node_tools"
  cp "$here/package.json" "$here/package-lock.json" "$node_tools/"
  (cd "$node_tools" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
    die "could not install the pinned tools of $here/package-lock.json"
  touch "$node_tools/.installed"
fi

# ---- Build ------------------------------------------------------------------

build="$(mktemp -d "${TMPDIR:-/tmp}/disk_usage-build.XXXXXX")"
trap 'rm -rf "$build"' EXIT

# The C bindings of the world: plugin.h, plugin.c and the component type
# (plugin_component_type.o), which wit-component reads when it makes the
# component.
if ! log="$("$wit_bindgen" c --world plugin --out-dir "$build/bindings" "$wit" 2>&1)"; then
  echo "$log" >&2
  die "wit-bindgen failed"
fi

# A reactor: no main, and _initialize (run when the component is
# instantiated) sets up libc. Exports come from the bindings' export names.
"$cc" --target=$target "${sysroot_flags[@]}" -mexec-model=reactor \
  -std=c11 -O2 -Wall -Wextra \
  -I "$build/bindings" \
  -o "$build/core.wasm" \
  "$here/disk_usage.c" "$here/aggregate.c" "$here/json.c" \
  "$build/bindings/plugin.c" "$build/bindings/plugin_component_type.o" \
  -Wl,--strip-debug

# The core module imports WASI preview 1; the reactor adapter bundled with
# jco turns it into a component that imports WASI 0.2.
"$jco" new "$build/core.wasm" --wasi-reactor -o "$build/disk_usage.wasm" >/dev/null
mv "$build/disk_usage.wasm" "$out_dir/disk_usage.wasm"
echo "$out_dir/disk_usage.wasm"
