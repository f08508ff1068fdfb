// The llama family's ops on the CPU: RMSNorm, SwiGLU and rotary position embeddings.
//   RMSNorm  forward:  rstd = 1/√(mean_c x² + eps),  y = x·rstd·w
//            backward: g = dy·w;  dx += rstd·(g − x̂·mean_c(g·x̂)) with x̂ = x·rstd;  dw += Σ_rows dy·x̂
//   SwiGLU   forward:  y = silu(a)·u,  silu(a) = a·σ(a)            (row = [a (F) | u (F)])
//            backward: da = dy·u·σ(a)·(1 + a·(1 − σ(a))),  du = dy·silu(a)
//   RoPE     rotate-half pairs (i, i + HS/2) of every q and k head by a = pos·inv_freq_i,
//            inv_freq_i = 1/θ^(2i/HS), computed in fp32 in Hugging Face's order; backward rotates by −a.
// Rows are split over threads; dw: per-thread partial sums added in thread order (deterministic for
// a given thread count), as in layernorm.cpp.
#include <Eigen/Core>
#include <cmath>
#include <vector>

#include <omp.h>

#include "cpu/ops.h"

namespace cairn::cpu {
namespace {
using Arr = Eigen::Map<Eigen::ArrayXf>;
using CArr = Eigen::Map<const Eigen::ArrayXf>;
}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float* y = out + static_cast<size_t>(n) * C;
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
    const float r = 1.0f / std::sqrt(static_cast<float>(ss / C) + eps);
    for (int c = 0; c < C; ++c) y[c] = w[c] * (x[c] * r);
    rstd[n] = r;
  }
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int C) {
  const int T = omp_get_max_threads();
  std::vector<float> part(static_cast<size_t>(T) * C, 0.0f);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float* pdw = part.data() + static_cast<size_t>(t) * C;
    const int n0 = static_cast<int>(static_cast<long>(N) * t / nt), n1 = static_cast<int>(static_cast<long>(N) * (t + 1) / nt);
    for (int n = n0; n < n1; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* dy = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      const float r = rstd[n];
      float gx_mean = 0.0f;
      for (int c = 0; c < C; ++c) {
        const float xh = x[c] * r;
        gx_mean += dy[c] * w[c] * xh;
        pdw[c] += dy[c] * xh;
      }
      gx_mean /= C;
      for (int c = 0; c < C; ++c) dx[c] += r * (dy[c] * w[c] - x[c] * r * gx_mean);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) dw[c] += part[static_cast<size_t>(t) * C + c];
}

// SwiGLU runs on Eigen's packets (its vectorised exp; std::exp per element kept this scalar), over a
// thread's aligned scratch rows padded with zeros to whole packets: every element of every row takes
// the same packet arithmetic, whatever the row's address. (Over a Map of the row itself Eigen does
// the unaligned head and the tail with scalar code and glibc's expf, whose last bits differ, and a
// reward would depend on the row's place in the batch: docs/model.md#numerics-and-determinism.)
namespace {
constexpr int kPad = 16;  // floats: a whole number of packets for SSE, AVX and AVX-512
struct SwiGluScratch {
  int F;
  Eigen::ArrayXf a, u, dy, x, y;
  explicit SwiGluScratch(int F_) : F(F_) {
    const int Fp = (F + kPad - 1) / kPad * kPad;
    for (Eigen::ArrayXf* v : {&a, &u, &dy, &x, &y}) v->setZero(Fp);
  }
  void load(const float* inp, int n) {  // a and u of row n of [a (F) | u (F)]
    const float* row = inp + static_cast<size_t>(n) * 2 * F;
    a.head(F) = CArr(row, F), u.head(F) = CArr(row + F, F);
  }
};
}  // namespace

void swiglu_forward(float* out, const float* inp, int N, int F) {
#pragma omp parallel
  {
    SwiGluScratch w(F);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      w.load(inp, n);
      w.y = w.a / (1.0f + (-w.a).exp()) * w.u;
      Arr(out + static_cast<size_t>(n) * F, F) = w.y.head(F);
    }
  }
}

void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F) {
#pragma omp parallel
  {
    SwiGluScratch w(F);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      w.load(inp, n);
      w.dy.head(F) = CArr(dout + static_cast<size_t>(n) * F, F);
      float* da = dinp + static_cast<size_t>(n) * 2 * F;
      w.x = (1.0f + (-w.a).exp()).inverse();  // σ(a)
      w.y = w.dy * w.u * w.x * (1.0f + w.a * (1.0f - w.x));
      Arr(da, F) = w.y.head(F);
      w.y = w.dy * w.a * w.x;
      Arr(da + F, F) = w.y.head(F);
    }
  }
}

namespace {
// Rotates the q and k heads of every row by sign·a (sign +1: forward, −1: backward).
void rope_rotate(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, float sign) {
  const int half = HS / 2, W = (NH + 2 * NKV) * HS;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(HS));
#pragma omp parallel
  {
    std::vector<float> cs(half), sn(half);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float p = static_cast<float>(pos[n]);
      for (int i = 0; i < half; ++i) {
        const float a = p * inv_freq[i];
        cs[i] = std::cos(a), sn[i] = sign * std::sin(a);
      }
      float* row = qkv + static_cast<size_t>(n) * W;
      for (int h = 0; h < NH + NKV; ++h) {  // the q heads, then the k heads right after them
        float* x = row + static_cast<size_t>(h) * HS;
        for (int i = 0; i < half; ++i) {
          const float x0 = x[i], x1 = x[i + half];
          x[i] = x0 * cs[i] - x1 * sn[i];
          x[i + half] = x1 * cs[i] + x0 * sn[i];
        }
      }
    }
  }
}
}  // namespace

void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) {
  rope_rotate(qkv, pos, N, NH, NKV, HS, theta, 1.0f);
}
void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) {
  rope_rotate(dqkv, pos, N, NH, NKV, HS, theta, -1.0f);
}

}  // namespace cairn::cpu
