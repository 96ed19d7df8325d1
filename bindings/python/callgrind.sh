#!/usr/bin/env bash
# Instructions per call of bench.py's cases, counted by callgrind: each case runs alone
# (`bench.py --only CASE`) at two sizes, the difference of the two totals is divided by the
# difference in calls, and the same figure of the "empty loop" case (the loop and bench.py's
# setup, which grows with the calls too) is subtracted: what is left is the call itself.
# Usage (from the repository root, after `cargo build --release`):
#   bash bindings/python/callgrind.sh ["CASE" ...]     (default: every case below)
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind" >&2; exit 1; }
export PYTHONPATH="$PWD/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONHASHSEED=0  # the same dict layouts in every run
export SLUICE_LIBRARY="${SLUICE_LIBRARY:-$PWD/target/release/libsluice.so}"
path="$("$python" -c 'from sluice import _limiter; print(_limiter.FAST_PATH)')"
if [ "$#" -eq 0 ]; then
  set -- "check, $path (library clock)" "check, $path (now_ms)" "allow, $path (library clock)" \
    "check, ctypes path (library clock)" "allow, ctypes path (library clock)" \
    "limits moving window, memory"
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
count() {  # count CASE HITS: total instructions of one run of CASE with 200 keys x HITS
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$python" bindings/python/bench.py \
    --only "$1" --keys 200 --hits "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_call() { echo $(( ($(count "$1" 60) - $(count "$1" 10)) / (200 * 50) )); }
loop="$(per_call "empty loop")"
printf '%-40s %s\n' "case" "instructions per call (the loop's $loop subtracted)"
for case in "$@"; do
  printf '%-40s %d\n' "$case" "$(( $(per_call "$case") - loop ))"
done
