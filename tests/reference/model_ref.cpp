// Double-precision naive reference of the model (see model_ref.h).
#include "reference/model_ref.h"

#include <cmath>
#include <limits>

namespace cairn::ref {

Vec linear(const Vec& x, const double* W, const double* b, int N, int I, int O) {
  Vec y(static_cast<size_t>(N) * O);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < O; ++o) {
      double s = b ? b[o] : 0.0;
      for (int i = 0; i < I; ++i) s += x[static_cast<size_t>(n) * I + i] * W[static_cast<size_t>(o) * I + i];
      y[static_cast<size_t>(n) * O + o] = s;
    }
  return y;
}

Vec layernorm(const Vec& x, const double* w, const double* b, int N, int C) {
  Vec y(x.size());
  for (int n = 0; n < N; ++n) {
    const double* r = x.data() + static_cast<size_t>(n) * C;
    double mu = 0, var = 0;
    for (int c = 0; c < C; ++c) mu += r[c];
    mu /= C;
    for (int c = 0; c < C; ++c) var += (r[c] - mu) * (r[c] - mu);
    var /= C;
    for (int c = 0; c < C; ++c) y[static_cast<size_t>(n) * C + c] = (r[c] - mu) / std::sqrt(var + 1e-5) * w[c] + b[c];
  }
  return y;
}

Vec rmsnorm(const Vec& x, const double* w, int N, int C, double eps) {
  Vec y(x.size());
  for (int n = 0; n < N; ++n) {
    const double* r = x.data() + static_cast<size_t>(n) * C;
    double ms = 0;
    for (int c = 0; c < C; ++c) ms += r[c] * r[c];
    const double inv = 1.0 / std::sqrt(ms / C + eps);
    for (int c = 0; c < C; ++c) y[static_cast<size_t>(n) * C + c] = r[c] * inv * w[c];
  }
  return y;
}

double gelu(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

Vec swiglu(const Vec& x, int N, int F) {
  Vec y(static_cast<size_t>(N) * F);
  for (int n = 0; n < N; ++n)
    for (int f = 0; f < F; ++f) {
      const double g = x[static_cast<size_t>(n) * 2 * F + f], u = x[static_cast<size_t>(n) * 2 * F + F + f];
      y[static_cast<size_t>(n) * F + f] = g / (1 + std::exp(-g)) * u;
    }
  return y;
}

Vec rope(const Vec& qkv, int T, int NH, int NKV, int HS, double theta) {
  Vec y = qkv;
  const int W = (NH + 2 * NKV) * HS, half = HS / 2;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < NH + NKV; ++h)  // q heads, then k heads
      for (int i = 0; i < half; ++i) {
        const double a = t * std::pow(theta, -2.0 * i / HS);
        const size_t x0 = static_cast<size_t>(t) * W + static_cast<size_t>(h) * HS + i, x1 = x0 + half;
        y[x0] = qkv[x0] * std::cos(a) - qkv[x1] * std::sin(a);
        y[x1] = qkv[x1] * std::cos(a) + qkv[x0] * std::sin(a);
      }
  return y;
}

namespace {
// qkv index of (token t, part 0 q / 1 k / 2 v, head h of that part, column e)
struct Layout {
  int NH, NKV, HS;
  size_t operator()(int t, int part, int h, int e) const {
    const size_t W = static_cast<size_t>(NH + 2 * NKV) * HS;
    const int base = part == 0 ? 0 : part == 1 ? NH : NH + NKV;
    return t * W + static_cast<size_t>(base + h) * HS + e;
  }
};
}  // namespace

Vec attention(const Vec& qkv, int T, int NH, int NKV, int HS, bool causal) {
  return attention_masked(qkv, T, NH, NKV, HS, [causal](int i, int j) { return !causal || j <= i; });
}

Vec attention_backward(const Vec& qkv, const Vec& dout, int T, int NH, int NKV, int HS, bool causal) {
  return attention_masked_backward(qkv, dout, T, NH, NKV, HS, [causal](int i, int j) { return !causal || j <= i; });
}

Vec attention_masked(const Vec& qkv, int T, int NH, int NKV, int HS, const Visible& visible) {
  const int C = NH * HS, G = NH / NKV;
  const Layout at{NH, NKV, HS};
  Vec out(static_cast<size_t>(T) * C, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < T; ++i) {
      const int g = h / G;
      Vec s(T, 0.0);
      double mx = -std::numeric_limits<double>::infinity();
      for (int j = 0; j < T; ++j) {
        if (!visible(i, j)) continue;
        double d = 0;
        for (int e = 0; e < HS; ++e) d += qkv[at(i, 0, h, e)] * qkv[at(j, 1, g, e)];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (int j = 0; j < T; ++j)
        if (visible(i, j)) z += (s[j] = std::exp(s[j] - mx));
      for (int j = 0; j < T; ++j)
        if (visible(i, j))
          for (int e = 0; e < HS; ++e) out[static_cast<size_t>(i) * C + h * HS + e] += s[j] / z * qkv[at(j, 2, g, e)];
    }
  return out;
}

Vec attention_masked_backward(const Vec& qkv, const Vec& dout, int T, int NH, int NKV, int HS, const Visible& visible) {
  const int C = NH * HS, G = NH / NKV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  const Layout at{NH, NKV, HS};
  Vec d(qkv.size(), 0.0);
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < T; ++i) {
      const int g = h / G;
      Vec p(T, 0.0), dp(T, 0.0);
      double mx = -1e300, z = 0;
      for (int j = 0; j < T; ++j) {
        if (!visible(i, j)) continue;
        double s = 0;
        for (int e = 0; e < HS; ++e) s += qkv[at(i, 0, h, e)] * qkv[at(j, 1, g, e)];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (int j = 0; j < T; ++j)
        if (visible(i, j)) z += (p[j] = std::exp(p[j] - mx));
      for (int j = 0; j < T; ++j) p[j] /= z;  // invisible keys stay 0
      double pdp = 0;
      for (int j = 0; j < T; ++j) {
        if (!visible(i, j)) continue;
        double s = 0;
        for (int e = 0; e < HS; ++e) s += dout[static_cast<size_t>(i) * C + h * HS + e] * qkv[at(j, 2, g, e)];
        dp[j] = s;
        pdp += p[j] * s;
      }
      for (int j = 0; j < T; ++j) {
        if (!visible(i, j)) continue;
        const double ds = p[j] * (dp[j] - pdp) * scale;
        for (int e = 0; e < HS; ++e) {
          d[at(j, 2, g, e)] += p[j] * dout[static_cast<size_t>(i) * C + h * HS + e];
          d[at(i, 0, h, e)] += ds * qkv[at(j, 1, g, e)];
          d[at(j, 1, g, e)] += ds * qkv[at(i, 0, h, e)];
        }
      }
    }
  return d;
}

Vec model_rewards(const ModelConfig& cfg, const ParamTable& t, const Vec& P, const std::vector<std::vector<int32_t>>& seqs) {
  const int C = cfg.d_model, F = cfg.d_ff, H = cfg.n_heads_out, NH = cfg.n_heads, NKV = cfg.kv_heads();
  const int HS = cfg.head_size(), QKV = cfg.qkv_width(), A = NH * HS;
  const bool llama = cfg.is_llama();
  auto opt = [&](size_t off) { return off == kNoParam ? nullptr : &P[off]; };
  auto norm = [&](const Vec& x, size_t w, size_t b, int rows) {
    return llama ? rmsnorm(x, &P[w], rows, C, cfg.norm_eps) : layernorm(x, &P[w], &P[b], rows, C);
  };
  Vec rewards;
  for (const auto& ids : seqs) {
    const int T = static_cast<int>(ids.size());
    Vec x(static_cast<size_t>(T) * C);
    for (int i = 0; i < T; ++i)
      for (int c = 0; c < C; ++c)
        x[static_cast<size_t>(i) * C + c] = P[t.tok_emb + static_cast<size_t>(ids[i]) * C + c] +
                                             (llama ? 0.0 : P[t.pos_emb + static_cast<size_t>(i) * C + c]);
    for (const BlockParams& w : t.blocks) {
      Vec a = norm(x, w.ln1_w, w.ln1_b, T);
      Vec qkv = linear(a, &P[w.qkv_w], opt(w.qkv_b), T, C, QKV);
      if (llama) qkv = rope(qkv, T, NH, NKV, HS, cfg.rope_theta);
      Vec att = attention(qkv, T, NH, NKV, HS);
      Vec proj = linear(att, &P[w.proj_w], opt(w.proj_b), T, A, C);
      for (size_t k = 0; k < x.size(); ++k) x[k] += proj[k];
      Vec m = norm(x, w.ln2_w, w.ln2_b, T);
      Vec fc = linear(m, &P[w.fc_w], opt(w.fc_b), T, C, llama ? 2 * F : F);
      if (llama) fc = swiglu(fc, T, F);
      else
        for (double& v : fc) v = gelu(v);
      Vec mp = linear(fc, &P[w.mp_w], opt(w.mp_b), T, F, C);
      for (size_t k = 0; k < x.size(); ++k) x[k] += mp[k];
    }
    Vec last(x.end() - C, x.end());
    Vec lf = norm(last, t.lnf_w, t.lnf_b, 1);
    Vec r = linear(lf, &P[t.head_w], opt(t.head_b), 1, C, H);
    rewards.insert(rewards.end(), r.begin(), r.end());
  }
  return rewards;
}

}  // namespace cairn::ref
