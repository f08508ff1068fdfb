// Optimizer kernels: gradient sum of squares (fixed grid, double partials in a fixed order, so the
// global norm is deterministic) and the fused AdamW update, the same maths as src/cpu/adamw.cpp:
//   g' = g·s;  m = β1·m + (1−β1)·g';  v = β2·v + (1−β2)·g'²
//   p -= lr·( (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + eps) + wd·p )
#include <cmath>

#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void sum_squares_kernel(double* partials, const float* x, size_t n) {
  __shared__ double warp_part[kThreads / 32];
  double s = 0;
  for (size_t i = blockIdx.x * size_t(kThreads) + threadIdx.x; i < n; i += size_t(gridDim.x) * kThreads)
    s += double(x[i]) * x[i];
  s = warp_sum(s);
  if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int k = 0; k < kThreads / 32; ++k) t += warp_part[k];
    partials[blockIdx.x] = t;
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, size_t n, AdamWHyper h, float bc1,
                             float bc2) {
  for (size_t i = blockIdx.x * size_t(kThreads) + threadIdx.x; i < n; i += size_t(gridDim.x) * kThreads) {
    const float gi = g[i] * h.grad_scale;
    const float mi = h.beta1 * m[i] + (1.0f - h.beta1) * gi;
    const float vi = h.beta2 * v[i] + (1.0f - h.beta2) * gi * gi;
    m[i] = mi, v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    p[i] -= h.lr * (mhat / (sqrtf(vhat) + h.eps) + h.weight_decay * p[i]);
  }
}

}  // namespace

void sum_squares_partials(double* partials, const float* x, size_t n, cudaStream_t s) {
  sum_squares_kernel<<<kSumSquaresBlocks, kThreads, 0, s>>>(partials, x, n);
  CAIRN_CUDA_LAUNCH_CHECK("sum_squares");
}

void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h, cudaStream_t s) {
  if (n == 0) return;
  const float bc1 = 1.0f - std::pow(h.beta1, static_cast<float>(h.step));
  const float bc2 = 1.0f - std::pow(h.beta2, static_cast<float>(h.step));
  const size_t blocks = std::min<size_t>((n + kThreads - 1) / kThreads, size_t(sm_count()) * 16);  // 16 per SM
  adamw_kernel<<<static_cast<int>(blocks), kThreads, 0, s>>>(p, g, m, v, n, h, bc1, bc2);
  CAIRN_CUDA_LAUNCH_CHECK("adamw");
}

}  // namespace cairn::cuda
