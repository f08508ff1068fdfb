// The CUDA backend: cuBLASLt GEMMs and our own kernels (kernels/*.cu) on one stream. Plain C++ header
// (no CUDA types), included by the backend factory and the GPU tests.
//
// Precision: parameters, optimizer state and activations are fp32 in device memory (the master
// copy). With CudaMath::BF16 (the default) every GEMM multiplies bf16-rounded operands on the tensor
// cores with fp32 accumulation (cuBLAS compute type 32F_FAST_16BF) and attention runs its MMAs in
// bf16 with fp32 softmax and accumulators; layernorm, RMSNorm, GELU, SwiGLU, RoPE, loss and AdamW are
// fp32. TF32 and FP32 change the GEMMs only (attention stays bf16 MMA).
#pragma once
#include <memory>
#include <string>

#include "cairn/backend.h"

namespace cairn {

enum class CudaMath { BF16, TF32, FP32 };
CudaMath parse_cuda_math(const std::string& s);  // "bf16" | "tf32" | "fp32" (src/backend/factory.cpp)

// Implemented in src/cuda/ when the CUDA backend is built, by stubs in src/no_cuda/ otherwise.
bool cuda_built();        // whether this build has the CUDA backend
int cuda_device_count();  // 0 when there is no device, no driver or no CUDA backend (never throws)
// verbose: print each cuBLASLt plan (shape, compute type) as it is made.
std::unique_ptr<Backend> make_cuda_backend(int device, CudaMath math = CudaMath::BF16, bool verbose = false);

}  // namespace cairn
