#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ into build-fuzz/ (clang, -DCAIRN_FUZZ=ON, CPU only) and runs
# each for SECONDS (default 60) on a copy of its seed corpus, fuzz/corpus/<harness>/, which is never
# written to. Prints one JSON line per harness (executions, libFuzzer's final cov/ft, corpus size, ...)
# and a summary line; exits 1 on any finding (crash, sanitizer report, timeout, out-of-memory, broken
# invariant), naming the saved input. Installs nothing (scripts/setup.sh has clang, libclang-rt-dev, libomp-dev).
#
#   scripts/fuzz.sh [SECONDS]
#   CAIRN_FUZZ_HARNESSES="pairs gguf"   only these harnesses (default: every fuzz/*.cpp)
#   CAIRN_FUZZ_JOBS=2                   build parallelism (default: nproc)
#   CAIRN_FUZZ_FLAGS="-max_len=65536"   extra libFuzzer flags for every run
#   CAIRN_FUZZ_WORK=build-fuzz/run2      working directory (default build-fuzz/run): two runs of different
#                                       harnesses side by side, after one has built the harnesses
# Reproduce a finding: build-fuzz/fuzz/fuzz_<harness> <the saved input>. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
case "$seconds" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (bash scripts/setup.sh installs it)" >&2; exit 2; }

build=build-fuzz
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && gen=()
mkdir -p "$build"
# Quiet when it works; the tail of the log when it does not (compile errors go to stdout).
quiet() { "$@" >"$build/build.log" 2>&1 || { tail -n 40 "$build/build.log" >&2; echo "fuzz.sh: build failed ($build/build.log)" >&2; exit 2; }; }
quiet cmake -S . -B "$build" "${gen[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_FUZZ=ON \
  -DCAIRN_ENABLE_CUDA=OFF -DCAIRN_ENABLE_ONEDNN=OFF -DCAIRN_BUILD_TESTS=OFF -DCAIRN_BUILD_BENCH=OFF -DCAIRN_NATIVE=OFF
quiet cmake --build "$build" -j "${CAIRN_FUZZ_JOBS:-$(nproc)}" --target fuzz

harnesses="${CAIRN_FUZZ_HARNESSES:-$(cd fuzz && ls *.cpp | sed 's/\.cpp$//' | tr '\n' ' ')}"
work="${CAIRN_FUZZ_WORK:-$build/run}"
rm -rf "$work"
mkdir -p "$work" "$build/findings"
# Loaders that take a path get their files in a scratch directory: in memory when /dev/shm is there.
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "$PWD/$work")/cairn-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

json_str() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
stat_of() {  # stat::NAME of libFuzzer's final stats, 0 when absent
  local v
  v=$(sed -n "s/^stat::$1: *//p" "$2" | tail -1)
  echo "${v:-0}"
}

findings=0 total_execs=0
for h in $harnesses; do
  bin="$build/fuzz/fuzz_$h"
  [ -x "$bin" ] || { echo "fuzz.sh: no harness $bin" >&2; exit 2; }
  mkdir -p "$work/$h/corpus" "$build/findings/$h"
  cp -R "fuzz/corpus/$h/." "$work/$h/corpus/"
  dict=()
  if [ -f "fuzz/dict/$h.dict" ]; then
    # JSON readers get the JSON syntax tokens too (libFuzzer takes one -dict).
    if [ "$h" = gguf ]; then cp "fuzz/dict/$h.dict" "$work/$h/dict"; else cat fuzz/dict/json.dict "fuzz/dict/$h.dict" >"$work/$h/dict"; fi
    dict=(-dict="$work/$h/dict")
  fi
  log="$work/$h/log"
  rc=0
  # shellcheck disable=SC2086
  "$bin" "$work/$h/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$h/" ${CAIRN_FUZZ_FLAGS:-} >"$log" 2>&1 || rc=$?
  execs=$(stat_of number_of_executed_units "$log")
  last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  cov=${cov:-0} ft=${ft:-0} units=${units:-0}
  status=ok what="" artifact=""
  if [ "$rc" -ne 0 ]; then
    status=finding
    findings=$((findings + 1))
    what=$(grep -m1 -E 'cairn fuzz finding:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|out-of-memory' "$log" || echo "exit $rc")
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  fi
  total_execs=$((total_execs + execs))
  printf '{"harness":"%s","seconds":%s,"status":"%s","executions":%s,"exec_per_s":%s,"cov":%s,"ft":%s,"corpus_units":%s,"new_units":%s,"peak_rss_mb":%s' \
    "$h" "$seconds" "$status" "$execs" "$(stat_of average_exec_per_sec "$log")" "$cov" "$ft" "$units" \
    "$(stat_of new_units_added "$log")" "$(stat_of peak_rss_mb "$log")"
  [ "$status" = ok ] || printf ',"finding":%s,"input":%s,"log":%s' "$(json_str "$what")" "$(json_str "$artifact")" "$(json_str "$log")"
  printf '}\n'
  if [ "$status" != ok ]; then
    echo "fuzz.sh: $h: ${what} — input saved at ${artifact:-?} (reproduce: $bin ${artifact:-<input>}; log $log)" >&2
  fi
done
n=$(wc -w <<<"$harnesses")
printf '{"summary":{"harnesses":%s,"seconds_each":%s,"findings":%s,"executions":%s}}\n' "$n" "$seconds" "$findings" "$total_execs"
[ "$findings" -eq 0 ]
