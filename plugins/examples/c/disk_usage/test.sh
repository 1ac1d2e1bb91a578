#!/usr/bin/env bash
# Runs the native tests of the aggregate and the JSON reader (test.c) with
# the host's C compiler, under the address and undefined-behaviour
# sanitizers. Needs only a C compiler (gcc or clang).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cc="${CC:-cc}"
build="$(mktemp -d "${TMPDIR:-/tmp}/disk_usage-test.XXXXXX")"
trap 'rm -rf "$build"' EXIT

flags=(-std=c11 -O1 -g -Wall -Wextra -Werror -fno-omit-frame-pointer
  -fsanitize=address,undefined -fno-sanitize-recover=all)
# The code under test allocates through test.c's failing allocator.
"$cc" "${flags[@]}" -Dmalloc=test_malloc -Dcalloc=test_calloc -Drealloc=test_realloc \
  -c "$here/aggregate.c" -o "$build/aggregate.o"
"$cc" "${flags[@]}" -Dmalloc=test_malloc -Dcalloc=test_calloc -Drealloc=test_realloc \
  -c "$here/json.c" -o "$build/json.o"
"$cc" "${flags[@]}" -I "$here" "$here/test.c" "$build/aggregate.o" "$build/json.o" \
  -lm -o "$build/test"
"$build/test"
