// SGEMM ceiling probe (see sgemm_probe.cpp).
#pragma once

namespace cairn::cpu {
// GFLOP/s (2·M·K·N per GEMM) of out[M,N] = A[M,K]·Wᵀ on the CPU backend's GEMM path, median of repeats.
double measure_sgemm_gflops(int M = 2048, int K = 1024, int N = 1024, int repeats = 5);
}  // namespace cairn::cpu
