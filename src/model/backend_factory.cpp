// make_backend: the one place that knows which backends were built.
// CAIRN_CUDA_MATH=bf16|tf32|fp32 picks the CUDA GEMM precision (default bf16, see cuda/backend_cuda.h).
#include <cstdlib>
#include <stdexcept>

#include "cairn/backend.h"
#include "cpu/backend_cpu.h"
#ifdef CAIRN_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

namespace cairn {

bool cuda_available() {
#ifdef CAIRN_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
  if (device == "cuda") {
#ifdef CAIRN_HAVE_CUDA
    if (cuda_device_count() == 0) throw std::runtime_error("--device cuda: no CUDA device found");
    const char* math = std::getenv("CAIRN_CUDA_MATH");
    return make_cuda_backend(0, math && *math ? parse_cuda_math(math) : CudaMath::BF16);
#else
    throw std::runtime_error("--device cuda: this cairn was built without the CUDA backend (no nvcc at build time)");
#endif
  }
  throw std::invalid_argument("unknown device '" + device + "' (expected cpu or cuda)");
}

}  // namespace cairn
