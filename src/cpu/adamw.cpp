// Optimizer kernels on the CPU: gradient sum of squares (double, fixed-order per-chunk partials) and
// the fused AdamW update (decoupled weight decay, bias-corrected moments).
//   g' = g·s;  m = β1·m + (1−β1)·g';  v = β2·v + (1−β2)·g'²
//   p -= lr·( (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + eps) + wd·p )
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"

namespace cairn::cpu {

double sum_squares(const float* x, size_t n) {
  constexpr size_t kChunk = 1 << 15;
  const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
  std::vector<double> part(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < chunks; ++i) {
    const size_t b = static_cast<size_t>(i) * kChunk, e = std::min(n, b + kChunk);
    double s = 0;
    for (size_t k = b; k < e; ++k) s += static_cast<double>(x[k]) * x[k];
    part[i] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}

void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h) {
  const float bc1 = 1.0f - std::pow(h.beta1, static_cast<float>(h.step));
  const float bc2 = 1.0f - std::pow(h.beta2, static_cast<float>(h.step));
  const long len = static_cast<long>(n);
#pragma omp parallel for schedule(static) if (len > 32768)
  for (long i = 0; i < len; ++i) {
    const float gi = g[i] * h.grad_scale;
    m[i] = h.beta1 * m[i] + (1.0f - h.beta1) * gi;
    v[i] = h.beta2 * v[i] + (1.0f - h.beta2) * gi * gi;
    const float mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= h.lr * (mhat / (std::sqrt(vhat) + h.eps) + h.weight_decay * p[i]);
  }
}

}  // namespace cairn::cpu
