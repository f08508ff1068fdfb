#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer (CI stage; see .ci/run).
# A separate CPU-only build in build-asan/ (no CUDA, no benchmarks); any sanitizer report fails the
# test that triggered it (UBSan does not recover, ASan aborts). Extra arguments go to ctest.
# Assumes scripts/setup.sh has run (scripts/test.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
gen=()
command -v ninja >/dev/null && [ ! -f build-asan/CMakeCache.txt ] && gen=(-G Ninja)
# -O1 -g1 (line tables: reports keep file:line), as the sanitizers' docs suggest: measured on 2 cores,
# the build takes 280 s instead of ~600 s at RelWithDebInfo's -O2 -g, the tests 120 s instead of 97 s.
# oneDNN off: its JIT kernels under ASan are not yet checked (the bf16 tests skip here; the main suite runs them).
cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DCAIRN_SANITIZE=ON \
  -DCAIRN_ENABLE_CUDA=OFF -DCAIRN_ENABLE_ONEDNN=OFF -DCAIRN_BUILD_BENCH=OFF
cmake --build build-asan -j "$(nproc)" --target cairn cairn_tests
CAIRN_SMOLLM2="$(bash scripts/get_smollm2.sh)"
export CAIRN_SMOLLM2
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Left to the plain suite (scripts/test.sh): tests whose time goes to a Python reference (transformers,
# PyTorch, gguf-py) or to the 135M SmolLM2 model, the crash tests (process kills and resumes), the
# data-parallel runs under mpirun (OpenMPI's own allocations would need a LeakSanitizer suppression
# list, not written yet) and the learnability run; under ASan they would take most of an hour on 2 cores. CAIRN_SANITIZE_ALL=1 runs
# every test.
exclude='HfImport\.FinalHidden|GgufImport|HuggingFace|Transformers|SmolLM2|PyTorch|ExportRoundTrip|GgufPy|CrashTest|LearnsSynthetic|Distributed'
[ "${CAIRN_SANITIZE_ALL:-0}" = 1 ] && exclude='^$'
cd build-asan
ctest --output-on-failure -j "$(nproc)" -L cpu -E "$exclude" "$@"
