#!/usr/bin/env bash
# Build libsluice and test its C ABI from C:
#   - include/sluice.h compiles on its own (C11, and C++ when a C++ compiler is present);
#   - tests/c/test_sluice.c linked against the shared library, and against the static one;
#   - the shared-linked suite under valgrind memcheck (definite/indirect leaks and invalid
#     accesses fail; "still reachable" blocks of the Rust runtime are fine);
#   - examples/c/example.c, built and run (also under valgrind);
#   - tests/c/callgrind_check.c (the per-call instruction count's program), built and run.
# Build outputs go to target/c/. Usage: bash tests/c/run.sh

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

OUT="$ROOT/target/c"
LIBDIR="$ROOT/target/release"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -I "$ROOT/include")
VALGRIND=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
          --errors-for-leak-kinds=definite,indirect --error-exitcode=1)

section() { printf '\n==== %s ====\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# Run a test binary, show its output, and require the final "N passed, 0 failed" line.
run_suite() {
    local log="$1"
    shift
    "$@" 2>&1 | tee "$log"
    tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, 0 failed$' ||
        fail "$* did not end with \"N passed, 0 failed\""
}

section "tools"
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update && apt-get install -y "${missing[@]}"
    else
        sudo apt-get update && sudo apt-get install -y "${missing[@]}"
    fi
fi
cc --version | head -n 1
valgrind --version

section "cargo build --release"
cargo build --release
for f in libsluice.so libsluice.a; do
    [ -f "$LIBDIR/$f" ] || fail "cargo build did not produce $LIBDIR/$f"
done
mkdir -p "$OUT"

section "include/sluice.h compiles on its own"
header_ok=1
printf '#include "sluice.h"\nint main(void) { return 0; }\n' >"$OUT/header_only.c"
if cc "${CFLAGS[@]}" -c "$OUT/header_only.c" -o "$OUT/header_only.o" 2>"$OUT/header_only.err"; then
    echo "C11: ok"
else
    header_ok=0
    cat "$OUT/header_only.err"
    echo "C11: include/sluice.h DOES NOT COMPILE (see above)"
fi
if command -v c++ >/dev/null 2>&1; then
    cp "$OUT/header_only.c" "$OUT/header_only.cpp"
    if c++ -std=c++11 -Wall -Wextra -Werror -pedantic -I "$ROOT/include" \
        -c "$OUT/header_only.cpp" -o "$OUT/header_only_cpp.o" 2>"$OUT/header_only_cpp.err"; then
        echo "C++11: ok"
    else
        header_ok=0
        cat "$OUT/header_only_cpp.err"
        echo "C++11: include/sluice.h DOES NOT COMPILE (see above)"
    fi
fi
[ "$header_ok" -eq 1 ] || fail "include/sluice.h does not compile on its own (see above)"

section "build: test suite, shared library"
cc "${CFLAGS[@]}" "$HERE/test_sluice.c" \
    -o "$OUT/test_sluice_shared" \
    -L "$LIBDIR" -lsluice -Wl,-rpath,"$LIBDIR" -lpthread
# (ldd into a file first: `ldd | grep -q` can fail under pipefail when grep exits early)
ldd "$OUT/test_sluice_shared" >"$OUT/ldd_shared.txt"
grep -q "$LIBDIR/libsluice.so" "$OUT/ldd_shared.txt" ||
    fail "test_sluice_shared does not load $LIBDIR/libsluice.so"

section "build: test suite, static library"
cc "${CFLAGS[@]}" "$HERE/test_sluice.c" \
    -o "$OUT/test_sluice_static" \
    "$LIBDIR/libsluice.a" -lpthread -ldl -lm
ldd "$OUT/test_sluice_static" >"$OUT/ldd_static.txt"
if grep -q libsluice "$OUT/ldd_static.txt"; then
    fail "test_sluice_static is linked against a shared libsluice"
fi

section "run: shared"
run_suite "$OUT/shared.log" "$OUT/test_sluice_shared"

section "run: static"
run_suite "$OUT/static.log" "$OUT/test_sluice_static"

section "run: shared, under valgrind memcheck"
# valgrind's own report goes to valgrind.log, the suite's output to valgrind_run.log.
run_suite "$OUT/valgrind_run.log" "${VALGRIND[@]}" --log-file="$OUT/valgrind.log" \
    "$OUT/test_sluice_shared"
grep -vE 'Warning: set address range perms: large range' "$OUT/valgrind.log" |
    sed -n '/HEAP SUMMARY/,$p'
# One summary per process (the suite forks children): every one must say 0 errors.
grep -q 'ERROR SUMMARY: 0 errors' "$OUT/valgrind.log" || fail "valgrind printed no error summary"
if grep -E 'ERROR SUMMARY: [1-9]' "$OUT/valgrind.log"; then
    fail "valgrind reported errors (see $OUT/valgrind.log)"
fi

section "example: build and run"
cc "${CFLAGS[@]}" "$ROOT/examples/c/example.c" \
    -o "$OUT/example" -L "$LIBDIR" -lsluice -Wl,-rpath,"$LIBDIR"
cc "${CFLAGS[@]}" "$ROOT/examples/c/example.c" \
    -o "$OUT/example_static" "$LIBDIR/libsluice.a" -lpthread -ldl -lm
"$OUT/example" | tee "$OUT/example.log"
grep -q '^HTTP/1.1 429' "$OUT/example.log" || fail "the example printed no 429"
grep -q '^Retry-After: [0-9]' "$OUT/example.log" || fail "the example printed no Retry-After"
"$OUT/example_static" >"$OUT/example_static.log"
# The only line that may differ is the one using the wall clock; there is none in the output.
cmp -s "$OUT/example.log" "$OUT/example_static.log" ||
    fail "the statically linked example printed something else"
"${VALGRIND[@]}" --log-file="$OUT/valgrind_example.log" "$OUT/example" >/dev/null ||
    fail "valgrind found errors in the example (see $OUT/valgrind_example.log)"
echo "example: ok (shared, static, valgrind)"

section "callgrind_check: builds and runs (instruction counts: see its opening comment)"
cc -O2 "${CFLAGS[@]}" "$HERE/callgrind_check.c" -o "$OUT/callgrind_check" \
    -L "$LIBDIR" -lsluice -Wl,-rpath,"$LIBDIR"
"$OUT/callgrind_check" 1000 | tee "$OUT/callgrind_check.log"
grep -q '^1000 of 1000 admitted$' "$OUT/callgrind_check.log" || fail "callgrind_check did not admit all"

section "summary"
echo "shared:   $(tail -n 1 "$OUT/shared.log")"
echo "static:   $(tail -n 1 "$OUT/static.log")"
echo "valgrind: $(tail -n 1 "$OUT/valgrind_run.log")"
echo "valgrind: $(grep -E 'ERROR SUMMARY:' "$OUT/valgrind.log" | sed 's/^==[0-9]*== //')"
echo "all C tests passed"
