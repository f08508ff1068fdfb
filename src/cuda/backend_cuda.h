// The CUDA backend: cuBLASLt GEMMs and our own kernels (kernels/*.cu) on one stream. Plain C++ header
// (no CUDA types), included by the backend factory, the CLI and the tests.
//
// Precision: parameters, optimizer state and activations are fp32 in device memory (the master
// copy). With CudaMath::BF16 (the default) every GEMM multiplies bf16-rounded operands on the tensor
// cores with fp32 accumulation (cuBLAS compute type 32F_FAST_16BF) and attention runs its MMAs in
// bf16 with fp32 softmax and accumulators; layernorm, GELU, loss and AdamW are fp32. TF32 and FP32
// change the GEMMs only (attention stays bf16 MMA).
#pragma once
#include <memory>
#include <string>

#include "cairn/backend.h"

namespace cairn {

enum class CudaMath { BF16, TF32, FP32 };
CudaMath parse_cuda_math(const std::string& s);  // "bf16" | "tf32" | "fp32"

int cuda_device_count();  // 0 when there is no device or no driver (never throws)
std::unique_ptr<Backend> make_cuda_backend(int device, CudaMath math = CudaMath::BF16);

// Dense bf16 GEMM throughput of this device through cuBLAS (n×n×n, median of `reps`), TFLOP/s:
// the ceiling the benchmarks quote their fraction of.
double cuda_bf16_gemm_tflops(int n = 8192, int reps = 10);

}  // namespace cairn
