// The CUDA backend's entry points (src/cuda/backend_cuda.h) in a build without it: no devices, and
// asking for one says why. Linked instead of src/cuda/ when CMake finds no nvcc or is told
// -DCAIRN_ENABLE_CUDA=OFF.
#include <stdexcept>

#include "cuda/backend_cuda.h"

namespace cairn {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::unique_ptr<Backend> make_cuda_backend(int, CudaMath, bool) {
  throw std::runtime_error("--device cuda: this cairn was built without the CUDA backend (no nvcc at build time)");
}

}  // namespace cairn
