// Independent double-precision reference of the model (docs/model.md: both architecture families) and
// its ops, for tests only. Written per sequence (no packing), naive loops, so it shares no code or
// structure with src/.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "cairn/config.h"
#include "cairn/params.h"

namespace cairn::ref {

using Vec = std::vector<double>;

// y[N,O] = x[N,I]·Wᵀ + b
Vec linear(const Vec& x, const double* W, const double* b, int N, int I, int O);
// LayerNorm over rows of C, eps 1e-5
Vec layernorm(const Vec& x, const double* w, const double* b, int N, int C);
// RMSNorm over rows of C: x / √(mean x² + eps) · w
Vec rmsnorm(const Vec& x, const double* w, int N, int C, double eps);
double gelu(double x);
// SwiGLU over rows [gate (F) | up (F)] → [N, F]: gate·σ(gate)·up
Vec swiglu(const Vec& x, int N, int F);
// Rotary embedding of every q and k head of qkv[T, (NH+2·NKV)·HS] at positions 0..T−1 (rotate-half
// pairs (i, i+HS/2), angle t·θ^(−2i/HS) in double).
Vec rope(const Vec& qkv, int T, int NH, int NKV, int HS, double theta);
// Causal (or full) grouped-query attention of one sequence: qkv[T, (NH+2·NKV)·HS] → out[T, NH·HS]
Vec attention(const Vec& qkv, int T, int NH, int NKV, int HS, bool causal = true);
// Gradient of Σ dout ⊙ attention(qkv) w.r.t. qkv for one sequence, by the textbook formulas in double.
Vec attention_backward(const Vec& qkv, const Vec& dout, int T, int NH, int NKV, int HS, bool causal);
// The same under any mask: query i attends to key j iff visible(i, j) (every query must see a key).
// A packed batch with shared prefixes is one "sequence" under the mask of its segments.
using Visible = std::function<bool(int i, int j)>;
Vec attention_masked(const Vec& qkv, int T, int NH, int NKV, int HS, const Visible& visible);
Vec attention_masked_backward(const Vec& qkv, const Vec& dout, int T, int NH, int NKV, int HS, const Visible& visible);
// rewards [B, H] of the whole model for each sequence (ids already framed), read at the last token
Vec model_rewards(const ModelConfig& cfg, const ParamTable& table, const Vec& params,
                  const std::vector<std::vector<int32_t>>& seqs);

// Central finite-difference gradient of f at x (each coordinate perturbed by ±h).
template <class F>
Vec fd_grad(const F& f, Vec x, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

}  // namespace cairn::ref
