// The CPU backend: Eigen GEMMs, our own kernels (src/cpu/*.cpp), OpenMP threads.
#pragma once
#include <memory>

#include "cairn/backend.h"
#include "cpu/attention.h"

namespace cairn {

// threads ≤ 0: all cores. The attention implementation defaults to the fastest (flash-style).
std::unique_ptr<Backend> make_cpu_backend(int threads, cpu::AttnImpl attn = cpu::AttnImpl::Flash);

}  // namespace cairn
