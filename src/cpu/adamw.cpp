// Optimizer kernels on the CPU: gradient sum of squares (double, fixed-order per-chunk partials) and
// the fused AdamW update (decoupled weight decay, bias-corrected moments).
//   g' = g·s;  m = β1·m + (1−β1)·g';  v = β2·v + (1−β2)·g'²
//   p -= lr·( (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + eps) + wd·p )
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"

namespace cairn::cpu {

namespace {
using CArr = Eigen::Map<const Eigen::ArrayXf>;
constexpr size_t kChunk = 1 << 14;  // elements per piece of work: 4 arrays of it stay in L2
}  // namespace

// Per fixed chunk a vectorised double sum (Eigen's reduction order, fixed for a chunk length), then the
// chunks in order: the same bits for any thread count.
double sum_squares(const float* x, size_t n) {
  const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
  std::vector<double> part(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < chunks; ++i) {
    const size_t b = static_cast<size_t>(i) * kChunk, e = std::min(n, b + kChunk);
    part[i] = CArr(x + b, static_cast<Eigen::Index>(e - b)).cast<double>().square().sum();
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}

// Element-wise, so any split gives the same bits. This file is compiled with -fno-math-errno
// (CMakeLists.txt): with errno to set, sqrtf keeps the loop scalar, and it was compute-bound at ~12
// cycles an element; vectorised it is vsqrtps/vdivps, IEEE-exact like the scalar code.
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h) {
  const float bc1 = 1.0f - std::pow(h.beta1, static_cast<float>(h.step));
  const float bc2 = 1.0f - std::pow(h.beta2, static_cast<float>(h.step));
  const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (chunks > 2)
  for (long c = 0; c < chunks; ++c) {
    const size_t b = static_cast<size_t>(c) * kChunk, e = std::min(n, b + kChunk);
    float* __restrict pp = p;
    float* __restrict mm = m;
    float* __restrict vv = v;
    const float* __restrict gg = g;
    for (size_t i = b; i < e; ++i) {
      const float gi = gg[i] * h.grad_scale;
      mm[i] = h.beta1 * mm[i] + (1.0f - h.beta1) * gi;
      vv[i] = h.beta2 * vv[i] + (1.0f - h.beta2) * gi * gi;
      const float mhat = mm[i] / bc1, vhat = vv[i] / bc2;
      pp[i] -= h.lr * (mhat / (std::sqrt(vhat) + h.eps) + h.weight_decay * pp[i]);
    }
  }
}

}  // namespace cairn::cpu
