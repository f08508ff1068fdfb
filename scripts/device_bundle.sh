#!/usr/bin/env bash
# Packs everything a GPU session needs into .gpu/ (git-ignored), in parts that each fit one call of
# the lent GPU machine (docs/gpu-session.md): that machine has the CUDA Toolkit, PyTorch and
# transformers, but not Eigen, SentencePiece, OpenMPI or our data, nothing can be installed there,
# and one call carries at most 64 MiB (the checkout included).
#
#   bash scripts/device_bundle.sh            (after scripts/setup.sh and scripts/get_smollm2.sh)
#
# Parts (each one a folder to name in `carry`; later calls find the earlier parts still there while
# the machine stays warm):
#   .gpu/a   cairn + cairn_gpu_tests built for sm_90 and a generic x86-64-v3 host, the shared
#            libraries the machine lacks, a relocatable OpenMPI (mpirun for the NCCL path), the gguf
#            wheel for the PyTorch reference, and the first piece of the SmolLM2 GGUF
#   .gpu/b   the rest of the SmolLM2 GGUF
#   .gpu/c   the full shared AlpacaEval judgments as pairs (train + valid), xz-compressed
# Large files are xz-compressed; bench/gpu_session.sh unpacks them there and checks their sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-device}
GGUF=${CAIRN_SMOLLM2:-$HOME/.cache/cairn/SmolLM2-135M-Instruct.Q4_1.gguf}
JUDGMENTS=${JUDGMENTS:-../shared/data/alpaca-eval-annotations}
LIMIT_MIB=62            # per call, less a margin for the checkout's growth
OUT=.gpu
[ -f "$GGUF" ] || { echo "no SmolLM2 GGUF at $GGUF: run scripts/get_smollm2.sh" >&2; exit 1; }
[ -f "$JUDGMENTS/train.jsonl.gz" ] || { echo "no judgments in $JUDGMENTS (set JUDGMENTS=)" >&2; exit 1; }

# oneDNN off: the GPU session needs no bf16 CPU GEMMs, and libdnnl is 40 MB the parts have no room for
echo "== build ($BUILD: sm_90, x86-64-v3, Release)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCAIRN_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCAIRN_BUILD_BENCH=OFF -DCAIRN_ENABLE_CUDA=ON -DCAIRN_ENABLE_MPI=ON -DCAIRN_ENABLE_ONEDNN=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target cairn cairn_gpu_tests

rm -rf "$OUT"
mkdir -p "$OUT"/{a,b,c} "$OUT"/a/{bin,whl}
stage=$(mktemp -d)
declare -A tokens
trap 'rm -rf "$stage"' EXIT

# Libraries every Linux with a CUDA driver has (glibc, the C++ runtime: the machine's are newer) or
# that the machine's own CUDA/PyTorch install provides (cuBLAS, NCCL: hundreds of MB, found there).
system_lib='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libutil|libresolv|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-[a-z-]+)\.so'
# OpenMPI components for networks a single machine has no use for: they drag in libfabric, UCX,
# verbs and PSM (tens of MB); without their files OpenMPI simply does not consider them.
network_component='(ofi|ucx|uct|openib|psm|psm2|usnic|portals4|verbs|pmix_s1|pmix_s2|munge|spml|sshmem|scoll|atomic|oshmem)'

xz_cached() {  # xz_cached FILE DEST: FILE xz-compressed (-9: minutes), cached by its sha256
  local c; c=$HOME/.cache/cairn/xz/$(sha256sum < "$1" | cut -c1-32).xz
  if [ ! -f "$c" ]; then mkdir -p "$(dirname "$c")"; xz -9 -T "$(nproc)" -c "$1" > "$c.tmp" && mv "$c.tmp" "$c"; fi
  cp "$c" "$2"
}
deps_of() {  # the resolved paths of the non-system libraries these ELF files need (ldd: transitively)
  ldd "$@" 2>/dev/null | awk '/=> \//{print $1, $3}' | grep -Ev "$system_lib" | awk '{print $2}' | sort -u
}

echo "== binaries and libraries"
for t in cairn cairn_gpu_tests; do strip -o "$stage/$t" "$BUILD/$t"; done
mpi=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
pmix=/usr/lib/x86_64-linux-gnu/pmix2
M="$stage/mpi"   # mirrors /usr, so that OPAL_PREFIX relocates every path OpenMPI computes from it
mkdir -p "$M/bin" "$M/etc/openmpi" "$M/share" "$M/lib/x86_64-linux-gnu/openmpi/lib/openmpi3" \
  "$M/lib/x86_64-linux-gnu/pmix2/lib/pmix" "$M/lib/x86_64-linux-gnu/pmix2/share"
cp -L /usr/bin/orterun "$M/bin/mpirun"
components=$(ls "$mpi"/*.so | grep -Ev "mca_[a-z]+_$network_component")
cp $components "$M/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/"
pmix_components=$(ls "$pmix"/lib/pmix/*.so | grep -Ev "$network_component")
cp $pmix_components "$M/lib/x86_64-linux-gnu/pmix2/lib/pmix/"
cp -rL "$pmix/share/." "$M/lib/x86_64-linux-gnu/pmix2/share/"
cp -rL /usr/share/openmpi "$M/share/"
cp /etc/openmpi/openmpi-mca-params.conf /etc/openmpi/openmpi-default-hostfile "$M/etc/openmpi/"
# closure (ldd lists it whole): the libraries of the binaries, of mpirun and of the components kept
mkdir -p "$stage/lib"
for l in $(deps_of "$stage/cairn" "$stage/cairn_gpu_tests" "$M/bin/mpirun" $components $pmix_components); do
  cp -L "$l" "$stage/lib/"
done
strip --strip-unneeded "$stage"/lib/*.so* "$M"/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so 2>/dev/null || true
tar -C "$stage" -cf - cairn cairn_gpu_tests lib mpi | xz -9 -T "$(nproc)" > "$OUT/a/bin/runtime.tar.xz"

echo "== gguf wheel (PyTorch reference reads the GGUF with it)"
gguf_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('gguf'))")
.venv/bin/pip download -q --no-deps --only-binary=:all: -d "$OUT/a/whl" "gguf==$gguf_version"

echo "== data: full judgments as pairs"
for s in train valid; do
  "$BUILD/cairn" pairs --from alpaca-eval --input "$JUDGMENTS/$s.jsonl.gz" --output "$stage/$s.pairs.jsonl" | tail -1
  xz_cached "$stage/$s.pairs.jsonl" "$OUT/c/$s.pairs.jsonl.xz"
done

echo "== tokens of one pass over the train pairs (SmolLM2 tokenizer, chat template, 1024 tokens)"
# the quality stage plans its steps by these and the speed it measures there
for share in on off; do
  tokens[$share]=$("$BUILD/cairn" train --init "$GGUF" --train "$stage/train.pairs.jsonl" --out "$stage/plan" --steps 1 \
    --batch-pairs 1 --freeze-layers 30 --max-seq-len 1024 --prefix-sharing $share --save-every 1000000 2>&1 |
    sed -n 's/^prefix sharing: .*(\([0-9]*\) tokens per pass.*/\1/p')
  rm -rf "$stage/plan"
  [ -n "${tokens[$share]}" ] || { echo "could not count the tokens (prefix sharing $share)" >&2; exit 1; }
done

echo "== SmolLM2 GGUF, split over a and b"
xz_cached "$GGUF" "$stage/model.xz"
used_a=$(du -sm --apparent-size "$OUT/a" | cut -f1)
checkout=$(git ls-files -z | du -cm --apparent-size --files0-from=- | tail -1 | cut -f1)
first=$(( (LIMIT_MIB - checkout - used_a) * 1024 * 1024 ))
head -c "$first" "$stage/model.xz" > "$OUT/a/model.xz.0"
tail -c +"$((first + 1))" "$stage/model.xz" > "$OUT/b/model.xz.1"

built="$(git rev-parse HEAD)$(git diff --quiet HEAD -- src kernels include tests CMakeLists.txt || echo '+uncommitted')"
{
  echo "gguf $(basename "$GGUF") $(sha256sum < "$GGUF" | cut -d' ' -f1)"
  for s in train valid; do echo "pairs $s.pairs.jsonl $(sha256sum < "$stage/$s.pairs.jsonl" | cut -d' ' -f1)"; done
  echo "tokens_per_pass_on ${tokens[on]}"
  echo "tokens_per_pass_off ${tokens[off]}"
  echo "built $built"
} > "$OUT/a/MANIFEST"
for p in a b c; do
  total=$(( checkout + $(du -sm --apparent-size "$OUT/$p" | cut -f1) ))
  echo "part $p: $(du -sh --apparent-size "$OUT/$p" | cut -f1) (+ checkout ${checkout} MiB = ${total} MiB of 64)"
  [ "$total" -le 64 ] || { echo "part $p is over one call's 64 MiB" >&2; exit 1; }
done
cat "$OUT/a/MANIFEST"
