// LayerNorm on the CPU, row per work item (eps 1e-5; two-pass mean/variance, stable under offsets).
//   forward:  x̂ = (x − μ)·rstd,  rstd = 1/√(var + eps),  y = x̂·w + b
//   backward: g = dy·w;  dx += rstd·(g − mean(g) − x̂·mean(g·x̂));  dw += Σ_rows dy·x̂;  db += Σ_rows dy
// dw/db: each thread sums its own rows into a private buffer; buffers are added in thread order,
// so the result is deterministic for a given thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "cpu/ops.h"

namespace cairn::cpu {

static constexpr float kLnEps = 1e-5f;

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float* y = out + static_cast<size_t>(n) * C;
    float s = 0.0f;
    for (int c = 0; c < C; ++c) s += x[c];
    const float mu = s / C;
    float v = 0.0f;
    for (int c = 0; c < C; ++c) v += (x[c] - mu) * (x[c] - mu);
    const float r = 1.0f / std::sqrt(v / C + kLnEps);
    for (int c = 0; c < C; ++c) y[c] = (x[c] - mu) * r * w[c] + b[c];
    mean[n] = mu;
    rstd[n] = r;
  }
}

void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C) {
  const int T = omp_get_max_threads();
  std::vector<float> part(static_cast<size_t>(T) * 2 * C, 0.0f);  // per thread: dw (C) | db (C)
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float* pdw = part.data() + static_cast<size_t>(t) * 2 * C;
    float* pdb = pdw + C;
    const int n0 = static_cast<int>(static_cast<long>(N) * t / nt), n1 = static_cast<int>(static_cast<long>(N) * (t + 1) / nt);
    for (int n = n0; n < n1; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* dy = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      const float mu = mean[n], r = rstd[n];
      float g_mean = 0.0f, gx_mean = 0.0f;
      for (int c = 0; c < C; ++c) {
        const float xh = (x[c] - mu) * r, g = dy[c] * w[c];
        g_mean += g;
        gx_mean += g * xh;
        pdw[c] += dy[c] * xh;
        pdb[c] += dy[c];
      }
      g_mean /= C;
      gx_mean /= C;
      for (int c = 0; c < C; ++c) {
        const float xh = (x[c] - mu) * r;
        dx[c] += r * (dy[c] * w[c] - g_mean - xh * gx_mean);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    const float* pdw = part.data() + static_cast<size_t>(t) * 2 * C;
    for (int c = 0; c < C; ++c) dw[c] += pdw[c], db[c] += pdw[C + c];
  }
}

}  // namespace cairn::cpu
