// `cairn bench attention --device cuda`: one shape of the sweep on the GPU. Every implementation is
// validated against the naive GPU kernel (fp32 accumulation; itself checked against the CPU double
// reference by tests/gpu) on the same random inputs before it is timed with CUDA events (warm-up,
// median of repeats). Plain C++ header: the CLI includes it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

struct CudaAttnCase {
  int batch = 1, heads = 16, seq_len = 1024, head_dim = 64;
  bool causal = true, backward = true, bf16 = true;
  int warmup = 2, repeats = 10;
  bool time_naive = false;  // the reference is slow; time it only when asked
  uint64_t seed = 1;
};

struct CudaAttnResult {
  std::string impl;              // "naive" | "flash64" | "flash128"
  bool valid = true;             // agrees with the reference within tolerance
  double err_out = 0, err_dq = 0, err_dk = 0, err_dv = 0;  // ‖a − ref‖ / ‖ref‖
  double max_abs_out = 0, max_abs_grad = 0, max_abs_lse = 0;
  double fwd_ms = 0, fwd_bwd_ms = 0;  // medians; 0 when not timed
  size_t extra_bytes = 0;             // lse (+ backward workspace)
};

// Runs the case; results for "naive" (the reference, timed only if time_naive) and each flash variant.
std::vector<CudaAttnResult> bench_attention_cuda(const CudaAttnCase& c);
std::string cuda_device_name();

}  // namespace cairn
