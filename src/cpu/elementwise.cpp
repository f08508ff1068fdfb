// Elementwise and row-copy ops on the CPU: GELU (tanh form), residual add, embeddings (learned
// positions optional), row gather / scatter. GELU uses Eigen's vectorised tanh.
//   gelu(x)  = ½x(1 + tanh(u)),  u = √(2/π)(x + 0.044715x³)
//   gelu'(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
#include <Eigen/Core>
#include <algorithm>

#include <omp.h>

#include "cpu/ops.h"

namespace cairn::cpu {
namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
constexpr size_t kChunk = 1 << 14;

template <class Fn>
void parallel_chunks(size_t n, const Fn& fn) {
  const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < chunks; ++i) {
    const size_t b = static_cast<size_t>(i) * kChunk;
    fn(b, std::min(n, b + kChunk) - b);
  }
}
using ArrMap = Eigen::Map<Eigen::ArrayXf>;
using CArrMap = Eigen::Map<const Eigen::ArrayXf>;
}  // namespace

void gelu_forward(float* out, const float* inp, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t len) {
    CArrMap x(inp + b, len);
    ArrMap y(out + b, len);
    y = 0.5f * x * (1.0f + (kSqrt2OverPi * (x + kGeluC * x.cube())).tanh());
  });
}

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t len) {
    CArrMap x(inp + b, len), dy(dout + b, len);
    ArrMap dx(dinp + b, len);
    Eigen::ArrayXf t = (kSqrt2OverPi * (x + kGeluC * x.cube())).tanh();
    dx = dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t.square()) * kSqrt2OverPi * (1.0f + 3.0f * kGeluC * x.square()));
  });
}

void add_inplace(float* x, const float* y, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t len) { ArrMap(x + b, len) += CArrMap(y + b, len); });
}

void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                       int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* te = wte + static_cast<size_t>(ids[n]) * C;
    float* y = out + static_cast<size_t>(n) * C;
    if (!wpe) {
      std::copy_n(te, C, y);
      continue;
    }
    const float* pe = wpe + static_cast<size_t>(pos[n]) * C;
    for (int c = 0; c < C; ++c) y[c] = te[c] + pe[c];
  }
}

// Threads own disjoint column ranges and walk tokens in order: deterministic, no atomics.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                        int C) {
#pragma omp parallel
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int c0 = C * t / nt, c1 = C * (t + 1) / nt;
    for (int n = 0; n < N; ++n) {
      const float* dy = dout + static_cast<size_t>(n) * C;
      float* gte = dwte + static_cast<size_t>(ids[n]) * C;
      for (int c = c0; c < c1; ++c) gte[c] += dy[c];
      if (!dwpe) continue;
      float* gpe = dwpe + static_cast<size_t>(pos[n]) * C;
      for (int c = c0; c < c1; ++c) gpe[c] += dy[c];
    }
  }
}

void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C) {
  for (int r = 0; r < R; ++r) std::copy_n(inp + static_cast<size_t>(rows[r]) * C, C, out + static_cast<size_t>(r) * C);
}

void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C) {
  for (int r = 0; r < R; ++r) {
    float* d = dinp + static_cast<size_t>(rows[r]) * C;
    const float* s = dout + static_cast<size_t>(r) * C;
    for (int c = 0; c < C; ++c) d[c] += s[c];
  }
}

}  // namespace cairn::cpu
