// Measurement helpers of the benchmarks (`cairn bench train`, `cairn bench attention`), kept out of
// the model library: the GEMM ceilings a benchmark quotes its FLOP rate against, measured in the
// same process, and the GPU attention benchmark. Plain C++ (no CUDA types). In a build without the
// CUDA backend the CUDA functions are stubs (bench/probes/no_cuda.cpp) that throw.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

// GFLOP/s (2·M·K·N per GEMM) of out[M,N] = A[M,K]·Wᵀ through the CPU backend's linear forward (Eigen
// fp32, or oneDNN on bf16 operands when bf16) over `threads` OpenMP threads (0: all cores), median
// of `repeats`.
double cpu_sgemm_gflops(int threads = 0, int M = 2048, int K = 1024, int N = 1024, int repeats = 5, bool bf16 = false);

// Dense bf16 GEMM throughput of CUDA device 0 through cuBLAS (n×n×n, median of `reps`), TFLOP/s.
double cuda_bf16_gemm_tflops(int n = 8192, int reps = 10);

// `cairn bench attention --device cuda`: one shape of the sweep on the GPU. Every implementation is
// validated against the naive GPU kernel (fp32 accumulation; itself checked against the CPU double
// reference by tests/gpu) on the same random inputs before it is timed with CUDA events (warm-up,
// median of repeats).
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
