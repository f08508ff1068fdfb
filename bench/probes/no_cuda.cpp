// The CUDA probes of bench/probes/probes.h in a build without the CUDA backend: each says so.
#include <stdexcept>

#include "bench/probes/probes.h"

namespace cairn {
namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error("--device cuda: this cairn was built without the CUDA backend (no nvcc at build time)");
}
}  // namespace

double cuda_bf16_gemm_tflops(int, int) { no_cuda(); }
std::vector<CudaAttnResult> bench_attention_cuda(const CudaAttnCase&) { no_cuda(); }
std::string cuda_device_name() { no_cuda(); }

}  // namespace cairn
