// The CPU backend: Eigen GEMMs, our own kernels (src/cpu/*.cpp), OpenMP threads.
#pragma once
#include <memory>
#include <string>

#include "cairn/backend.h"
#include "cpu/attention.h"

namespace cairn {

// Precision of the linear layers' GEMMs: fp32 (Eigen), or bf16 operands with fp32 accumulation
// (oneDNN: AMX or AVX512-BF16). Everything else is fp32 either way.
enum class CpuMath { FP32, BF16 };
CpuMath parse_cpu_math(const std::string& s);  // "fp32" | "bf16"; std::invalid_argument otherwise

// threads ≤ 0: all cores. The attention implementation defaults to the fastest (flash-style).
// CpuMath::BF16 where it cannot run (a build without oneDNN, a CPU without a bf16 matmul): runtime_error.
std::unique_ptr<Backend> make_cpu_backend(int threads, cpu::AttnImpl attn = cpu::AttnImpl::Flash,
                                          CpuMath math = CpuMath::FP32);

}  // namespace cairn
