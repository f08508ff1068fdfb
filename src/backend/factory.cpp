// make_backend: the one place that knows which backends exist. The CUDA backend's entry points
// (src/cuda/backend_cuda.h) are always declared; a build without CUDA links stubs that say so
// (src/no_cuda/), so no caller needs to know how cairn was built.
#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cairn/backend.h"
#include "cairn/dist.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"

namespace cairn {

CudaMath parse_cuda_math(const std::string& s) {
  if (s == "bf16") return CudaMath::BF16;
  if (s == "tf32") return CudaMath::TF32;
  if (s == "fp32") return CudaMath::FP32;
  throw std::invalid_argument("unknown CUDA math '" + s + "' (expected bf16, tf32 or fp32)");
}

bool cuda_available() { return cuda_device_count() > 0; }

std::unique_ptr<Backend> make_backend(const BackendOptions& o) {
  if (o.device == "cpu") {
    // data parallel on one node: the cores shared among its ranks unless --threads says otherwise
    const dist::Comm& w = dist::world();
    int threads = o.threads;
    if (threads <= 0 && w.local_size() > 1)
      threads = std::max(1, std::min(omp_get_max_threads(), omp_get_num_procs() / w.local_size()));
    return make_cpu_backend(threads, cpu::AttnImpl::Flash, parse_cpu_math(o.cpu_math));
  }
  if (o.device == "cuda") {
    const CudaMath math = parse_cuda_math(o.cuda_math);
    if (!cuda_built()) throw std::runtime_error("--device cuda: this cairn was built without the CUDA backend (no nvcc at build time)");
    if (cuda_device_count() == 0) throw std::runtime_error("--device cuda: no CUDA device found");
    // data parallel: one GPU per rank, the rank's place on its node
    const dist::Comm& w = dist::world();
    const int count = cuda_device_count();
    if (w.distributed() && count > 0 && w.local_size() > count)
      throw std::runtime_error("--device cuda: " + std::to_string(w.local_size()) + " ranks on this node but " +
                               std::to_string(count) + " GPUs (one rank per GPU)");
    return make_cuda_backend(count > 0 ? w.local_rank() % count : 0, math, o.verbose);
  }
  throw std::invalid_argument("unknown device '" + o.device + "' (expected cpu or cuda)");
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  BackendOptions o;
  o.device = device, o.threads = threads;
  return make_backend(o);
}

}  // namespace cairn
