#!/usr/bin/env bash
# The GPU checks of the open issues, run on the lent GPU machine from the parts packed by
# scripts/device_bundle.sh (docs/gpu-session.md says how the calls chain):
#
#   bash bench/gpu_session.sh STAGE...      stages, in this order when several are named:
#     tests     cairn_gpu_tests: every CUDA kernel against the CPU backend, prefix sharing (issue 11),
#               the NCCL path with one rank (issue 12), the llama kernels (issue 16)     needs .gpu/a
#     bench     base-preset step time, prefix sharing on synthetic pairs, one process against
#               mpirun -np 1 through NCCL (issues 11, 12)                               needs .gpu/a
#     smollm2   SmolLM2-135M training step: cairn against PyTorch bf16 (issue 16)      needs .gpu/a, b
#     quality   SmolLM2 reward model on the full judgments, as many steps as QUALITY_S
#               seconds allow at the speed smollm2 measured, then eval on all valid pairs
#                                                                           needs .gpu/a, b, c
# Every stage runs under its own time limit, writes its logs under $OUT (what comes back from the
# machine) and one JSON line per figure to $OUT/session.jsonl; a short table comes last.
# Knobs: OUT (default gpu-out), DEVICE (cuda; cpu dry-runs the logic here), SMOKE=1 (tiny sizes,
# for that dry run), QUALITY_S (training seconds, default 240), QUALITY_BATCH (32), QUALITY_LR (1e-5),
# EVAL_S (150), TESTS_S (420), DEADLINE_S (570: the stages of one call stop by then).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD G=$PWD/.gpu
RUN=$G/run                       # unpacked there; kept between calls while the machine is warm
OUT=${OUT:-$ROOT/gpu-out}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
PY=${PYTHON:-python3}          # the one with torch and transformers (on the machine: python3)
QUALITY_S=${QUALITY_S:-240}
mkdir -p "$OUT" "$RUN"
exec > >(tee -a "$OUT/session.log") 2>&1
tee_pid=$!
T0=$(date +%s)
summary=()
note() { summary+=("$(printf '%-9s %s' "$1" "$2")"); echo "-- $1: $2"; }
elapsed() { echo $(( $(date +%s) - T0 )); }
# lim S: S seconds, or what is left before DEADLINE_S (one device call runs at most 600 s); 1 if none
lim() { local left=$(( ${DEADLINE_S:-570} - $(elapsed) - 10 )); [ "$left" -lt 1 ] && left=1; echo $(( $1 < left ? $1 : left )); }
record() { echo "$1" >> "$OUT/session.jsonl"; }   # one JSON object per line

unxz_to() {  # unxz_to DEST FILE...: the concatenation of FILE... decompressed (xz, else python's lzma)
  local dest=$1; shift
  if command -v xz >/dev/null; then cat "$@" | xz -dc > "$dest"
  else cat "$@" | "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" > "$dest"
  fi
}
checked() {  # checked KIND NAME FILE: FILE's sha256 is the one MANIFEST gives for KIND NAME
  local want; want=$(awk -v k="$1" -v n="$2" '$1 == k && $2 == n {print $3}' "$G/a/MANIFEST")
  [ -n "$want" ] && [ "$(sha256sum < "$3" | cut -d' ' -f1)" = "$want" ]
}
manifest() { awk -v k="$1" '$1 == k {print $2}' "$G/a/MANIFEST"; }

# ---- setup: binaries, libraries, mpirun, python reference (every call; quick when done before) ----
[ -f "$G/a/MANIFEST" ] || { echo "no .gpu/a here: carry it (scripts/device_bundle.sh packs it)"; exit 1; }
stamp=$(sha256sum < "$G/a/bin/runtime.tar.xz" | cut -c1-16)
if [ "$(cat "$RUN/runtime.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$RUN/rt" && mkdir -p "$RUN/rt"
  unxz_to "$RUN/runtime.tar" "$G/a/bin/runtime.tar.xz" && tar -C "$RUN/rt" -xf "$RUN/runtime.tar" && rm "$RUN/runtime.tar" ||
    { echo "could not unpack .gpu/a/bin/runtime.tar.xz"; exit 1; }
  echo "$stamp" > "$RUN/runtime.stamp"
fi
RT=$RUN/rt M=$RUN/rt/mpi
libdirs=$RT/lib
# cuBLAS and NCCL: the machine's own (CUDA Toolkit, or the nvidia-* wheels under PyTorch)
nvidia_py=$("$PY" -c "import nvidia, os; print(' '.join(nvidia.__path__))" 2>/dev/null || true)
for n in libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  f=$(find -L /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets $nvidia_py /usr/lib/x86_64-linux-gnu \
      -name "$n" 2>/dev/null | head -1)
  [ -n "$f" ] && case ":$libdirs:" in *":$(dirname "$f"):"*) ;; *) libdirs="$libdirs:$(dirname "$f")" ;; esac
done
# Only our programs see these libraries (through the wrappers in $RUN/bin): the machine's python
# keeps its own libgomp, libssl and libz.
mkdir -p "$RUN/bin"
wrap() {  # wrap WRAPPER PROGRAM
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$libdirs" "$2" > "$1"
  chmod +x "$1"
}
[ -f "$M/bin/mpirun.bin" ] || mv "$M/bin/mpirun" "$M/bin/mpirun.bin"
wrap "$RUN/bin/cairn" "$RT/cairn"; wrap "$RUN/bin/cairn_gpu_tests" "$RT/cairn_gpu_tests"; wrap "$M/bin/mpirun" "$M/bin/mpirun.bin"
CAIRN=$RUN/bin/cairn
# OpenMPI 4.1 of Debian, relocated: mpirun must be the one of the libmpi cairn was linked with.
# plm isolated: ranks on this machine only (without it mpirun wants ssh or rsh even for -np 1);
# no core binding (gVisor); no cross-memory attach.
export PATH="$M/bin:$PATH" OPAL_PREFIX=$M OPAL_LIBDIR=$M/lib/x86_64-linux-gnu/openmpi/lib \
  OPAL_PKGLIBDIR=$M/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 OPAL_PKGDATADIR=$M/share/openmpi \
  OPAL_SYSCONFDIR=$M/etc/openmpi PMIX_PREFIX=$M/lib/x86_64-linux-gnu/pmix2 \
  PMIX_PKGLIBDIR=$M/lib/x86_64-linux-gnu/pmix2/lib/pmix PMIX_PKGDATADIR=$M/lib/x86_64-linux-gnu/pmix2/share/pmix \
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
  OMPI_MCA_plm=isolated OMPI_MCA_hwloc_base_binding_policy=none NCCL_DEBUG=${NCCL_DEBUG:-WARN} \
  CAIRN_BINARY=$CAIRN PYTHONUNBUFFERED=1
if ! "$PY" -c "import gguf" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$RUN/site" "$G"/a/whl/*.whl >/dev/null 2>&1
  export PYTHONPATH="$RUN/site${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "== $(date -u +%FT%TZ) $(manifest built) on $(hostname), stages: ${*:-none}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
if LD_LIBRARY_PATH=$libdirs ldd "$RT/cairn" "$RT/cairn_gpu_tests" "$M/bin/mpirun.bin" | grep "not found"; then echo "libraries missing (above)"; exit 1; fi
"$CAIRN" --version 2>/dev/null | head -1

GGUF=$RUN/$(manifest gguf)
unpacked() {  # unpacked DEST KIND NAME PART...: DEST, from the xz PARTs once, checked against MANIFEST
  local dest=$1 kind=$2 name=$3; shift 3
  [ -f "$dest" ] && return 0
  for p in "$@"; do [ -f "$p" ] || { echo "$name needs ${p#"$ROOT"/} (carry its part)"; return 1; }; done
  unxz_to "$dest.part" "$@" && checked "$kind" "$name" "$dest.part" && mv "$dest.part" "$dest" ||
    { echo "$name: checksum mismatch"; rm -f "$dest.part"; return 1; }
}
have_model() { unpacked "$GGUF" gguf "$(manifest gguf)" "$G/a/model.xz.0" "$G/b/model.xz.1"; }
have_data() {
  for s in train valid; do unpacked "$RUN/$s.pairs.jsonl" pairs "$s.pairs.jsonl" "$G/c/$s.pairs.jsonl.xz" || return 1; done
}
json_field() { "$PY" -c "import json, sys; j = json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }

# ---- stages ----
stage_tests() {
  # the data-parallel test (mpirun + NCCL) on its own, bounded, so a hung collective costs little
  local log=$OUT/gpu_tests.log dp='*DataParallel*' rc rc_dp
  timeout "$(lim "${TESTS_S:-420}")" "$RUN/bin/cairn_gpu_tests" --gtest_color=no --gtest_filter="-$dp" > "$log" 2>&1
  rc=$?
  timeout "$(lim 200)" "$RUN/bin/cairn_gpu_tests" --gtest_color=no --gtest_filter="$dp" >> "$log" 2>&1
  rc_dp=$?
  local passed failed skipped
  passed=$(grep -c '^\[       OK \]' "$log"); failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$log")
  skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z]' "$log")
  grep -E '^\[  FAILED  \] [A-Za-z]|^\[ [a-z ]+\]' "$log" | sort -u | head -40
  # prefix sharing on CUDA is opt-in until its tests have passed on a device (src/cli/common.cpp)
  if grep -qE '^\[       OK \] .*(Prefix|Shared)' "$log" && ! grep -qE '^\[  FAILED  \] .*(Prefix|Shared)' "$log"; then
    echo on > "$RUN/share_ok"
  fi
  record "{\"stage\":\"tests\",\"rc\":$rc,\"rc_data_parallel\":$rc_dp,\"passed\":$passed,\"failed\":$failed,\"skipped\":$skipped}"
  note tests "rc $rc (data parallel: rc $rc_dp): $passed passed, $failed failed, $skipped skipped ($(elapsed)s)"
}

stage_bench() {
  local b=16 s=512 steps=20 preset=base
  [ "$SMOKE" = 1 ] && b=2 s=64 steps=2 preset=tiny
  local common=(--device "$DEVICE" --batch-pairs "$b" --seq-len "$s" --steps "$steps" --warmup 3 --json --no-sgemm)
  for cfg in "--preset $preset" "--preset $preset --prefix-share --prompt-frac 0.5" \
             "--preset $preset --prefix-share --prompt-frac 0.8"; do
    local j; j=$(timeout "$(lim 240)" "$CAIRN" bench train $cfg "${common[@]}" 2>>"$OUT/bench.log") || { note bench "failed: $cfg"; continue; }
    record "$j"
    note bench "$cfg: $(echo "$j" | json_field '"%.1f pairs/s, %.0f tokens/s" % (j["pairs_per_s"], j["tokens_per_s"])')$(
      echo "$j" | json_field '"; shared %.2fx pairs/s" % j["prefix_share"]["speedup"] if "prefix_share" in j else ""' 2>/dev/null)"
  done
  local dp=(--device "$DEVICE" --presets "$preset" --steps 12 --batch-pairs "$b" --max-seq-len "$s" --mpirun "$M/bin/mpirun" --cairn "$CAIRN")
  [ "$SMOKE" = 1 ] && dp=(--device "$DEVICE" --presets tiny --steps 4 --batch-pairs 4 --max-seq-len 64
                         --mpirun "$M/bin/mpirun" --cairn "$CAIRN")
  if timeout "$(lim 300)" "$PY" bench/dp_scaling.py "${dp[@]}" --out "$OUT/session.jsonl" > "$OUT/dp.log" 2>&1; then
    note dp "$("$PY" - "$OUT/dp.log" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("; ".join("%s %.1f ms/step, all-reduce %.1f%%" % (r["config"], 1e3 * r["step_s_median"], 100 * r["allreduce_share"])
                for r in rows))
PY
)"
  else note dp "failed (dp.log)"; fi
}

stage_smollm2() {
  have_model || { note smollm2 "no model"; return; }
  local b=16 s=512 steps=8 rounds=2
  [ "$SMOKE" = 1 ] && b=1 s=32 steps=1 rounds=1
  local extra=(); [ "$SMOKE" = 1 ] && extra=(--freeze-layers 28)
  if timeout "$(lim 420)" "$PY" bench/compare_torch_pretrained.py --device "$DEVICE" --cairn "$CAIRN" --model "$GGUF" \
       --batch-pairs "$b" --seq-len "$s" --steps "$steps" --warmup 3 --rounds "$rounds" "${extra[@]}" \
       > "$OUT/smollm2_vs_torch.json" 2> "$OUT/smollm2_vs_torch.log"; then
    record "$(tail -1 "$OUT/smollm2_vs_torch.json")"
    note smollm2 "$(json_field '"cairn %.0f tokens/s, PyTorch %.0f tokens/s (%s), ratio %.2f" % (j["cairn_tokens_per_s"], j["torch_tokens_per_s"], j["torch_attention"], j["ratio"])' < "$OUT/smollm2_vs_torch.json")"
  else note smollm2 "comparison failed (smollm2_vs_torch.log)"; fi
  # the speed the quality stage plans by: the full fine-tune at its batch, 512 tokens
  local qb=${QUALITY_BATCH:-32}; [ "$SMOKE" = 1 ] && qb=2
  local j; j=$(timeout "$(lim 240)" "$CAIRN" bench train --init "$GGUF" --device "$DEVICE" --batch-pairs "$qb" --seq-len "$s" \
               --steps "$steps" --warmup 2 --json --no-sgemm "${extra[@]}" 2>>"$OUT/bench.log") &&
    record "$j" && echo "$j" | json_field '"%.0f" % j["tokens_per_s"]' > "$RUN/smollm2_tokens_per_s" &&
    note smollm2 "bench train --init, $qb pairs x $s: $(cat "$RUN/smollm2_tokens_per_s") tokens/s"
}

stage_quality() {
  have_model && have_data || { note quality "missing parts"; return; }
  local share=off; [ -f "$RUN/share_ok" ] && share=on
  [ "$DEVICE" = cpu ] && share=on
  # the speed smollm2 measured; else a guess (QUALITY_TOKENS_PER_S): the run stops at its time limit anyway
  local tps; tps=$(cat "$RUN/smollm2_tokens_per_s" 2>/dev/null || echo "${QUALITY_TOKENS_PER_S:-50000}")
  local qb=${QUALITY_BATCH:-32} seq=1024 train=$RUN/train.pairs.jsonl valid=$RUN/valid.pairs.jsonl extra=()
  if [ "$SMOKE" = 1 ]; then
    qb=2 seq=128 extra=(--freeze-layers 28)
    head -n 200 "$RUN/train.pairs.jsonl" > "$RUN/train_smoke.jsonl"; head -n 40 "$RUN/valid.pairs.jsonl" > "$RUN/valid_smoke.jsonl"
    train=$RUN/train_smoke.jsonl valid=$RUN/valid_smoke.jsonl
  fi
  # steps: one epoch, or what q seconds allow at the measured speed (tokens per pass from MANIFEST;
  # 0.8: real lengths vary, validation takes its share); q: QUALITY_S, or what the call has left
  # after loading (~40 s) and the evaluation
  local eval_s=${EVAL_S:-150} q=$QUALITY_S left; left=$(( $(lim 100000) - eval_s - 40 ))
  [ "$left" -lt "$q" ] && q=$left
  [ "$q" -lt 30 ] && { note quality "no time left in this call (DEADLINE_S)"; return; }
  local plan; plan=$("$PY" - "$(manifest "tokens_per_pass_$share")" "$tps" "$q" "$qb" "$(wc -l < "$train")" \
                      "$(wc -l < "$RUN/train.pairs.jsonl")" <<'PY'
import sys
tokens, tps, secs = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
batch, pairs, all_pairs = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
epoch_steps = -(-pairs // batch)
tokens *= pairs / all_pairs  # MANIFEST counts all train pairs; the smoke run uses a subset
steps = max(8, min(epoch_steps, int(epoch_steps * 0.8 * secs * tps / tokens)))
print(steps, epoch_steps, round(tokens / tps))
PY
)
  read -r steps epoch_steps epoch_s <<< "$plan"
  echo "quality: $steps of $epoch_steps steps in ~${q}s (an epoch would take ~${epoch_s}s), prefix sharing $share"
  rm -rf "$RUN/quality"
  timeout -s INT "$((q + 40))" "$CAIRN" train --save-every "$steps" --init "$GGUF" --device "$DEVICE" --train "$train" --valid "$valid" \
    --valid-max-pairs 400 --out "$RUN/quality" --batch-pairs "$qb" --lr "${QUALITY_LR:-1e-5}" --max-seq-len "$seq" \
    --steps "$steps" --eval-every $(( (steps + 3) / 4 )) --log-every 10 --prefix-sharing "$share" --seed 1 "${extra[@]}" \
    > "$OUT/quality_train.log" 2>&1
  local rc=$?
  tail -n 4 "$OUT/quality_train.log"
  cp "$RUN/quality/metrics.jsonl" "$OUT/quality_metrics.jsonl" 2>/dev/null
  [ -f "$RUN/quality/config.json" ] || { note quality "training failed (rc $rc, quality_train.log)"; return; }
  timeout "$(lim "$eval_s")" "$CAIRN" eval --device "$DEVICE" --model "$RUN/quality" --pairs "$valid" --batch-pairs 64 \
    --prefix-sharing "$share" --json > "$OUT/quality_eval.json" 2> "$OUT/quality_eval.log"
  local erc=$?
  record "{\"stage\":\"quality\",\"train_rc\":$rc,\"eval_rc\":$erc,\"steps\":$steps,\"epoch_steps\":$epoch_steps,\"batch_pairs\":$qb,\"prefix_sharing\":\"$share\"}"
  if [ "$erc" = 0 ]; then
    note quality "train rc $rc, $steps/$epoch_steps steps: $("$PY" - "$OUT/quality_eval.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
L = j["by_length"]
print("accuracy %.2f%% [%.2f-%.2f] vs length %.2f%%; similar-length %.1f%% (%d), shorter preferred %.1f%%; "
      "reward~length %+.2f; %d pairs in %.0fs" % (100 * j["accuracy"], 100 * j["accuracy_ci95"][0], 100 * j["accuracy_ci95"][1],
      100 * j["length_baseline_accuracy"], 100 * L["similar_length"]["accuracy"], L["similar_length"]["pairs"],
      100 * L["preferred_shorter"]["accuracy"], j["reward_length_pearson"], j["pairs"], j["seconds"]))
PY
)"
  else note quality "eval rc $erc (quality_eval.log)"; fi
}

for st in tests bench smollm2 quality; do
  for want in "$@"; do [ "$want" = "$st" ] && { echo "== $st ($(elapsed)s)"; "stage_$st"; }; done
done
# at most 8 files come back from a call: past that, the stage logs travel as one archive
if [ "$(ls "$OUT" | wc -l)" -gt 7 ]; then
  (cd "$OUT" && tar -czf logs.tar.gz --exclude session.log --exclude session.jsonl --exclude logs.tar.gz -- * &&
     find . -maxdepth 1 -type f ! -name session.log ! -name session.jsonl ! -name logs.tar.gz -delete)
fi
echo
echo "== summary ($(elapsed)s; logs and session.jsonl in $OUT)"
printf '%s\n' "${summary[@]}"
exec >&- 2>&-
wait "$tee_pid"
