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

double gelu(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

Vec attention(const Vec& qkv, int T, int NH, int HS, bool causal) {
  const int C = NH * HS;
  Vec out(static_cast<size_t>(T) * C, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < T; ++i) {
      const int jmax = causal ? i : T - 1;
      Vec s(jmax + 1);
      double mx = -std::numeric_limits<double>::infinity();
      for (int j = 0; j <= jmax; ++j) {
        double d = 0;
        for (int e = 0; e < HS; ++e) d += qkv[static_cast<size_t>(i) * 3 * C + h * HS + e] * qkv[static_cast<size_t>(j) * 3 * C + C + h * HS + e];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (int j = 0; j <= jmax; ++j) z += (s[j] = std::exp(s[j] - mx));
      for (int j = 0; j <= jmax; ++j)
        for (int e = 0; e < HS; ++e)
          out[static_cast<size_t>(i) * C + h * HS + e] += s[j] / z * qkv[static_cast<size_t>(j) * 3 * C + 2 * C + h * HS + e];
    }
  return out;
}

Vec model_rewards(const ModelConfig& cfg, const ParamTable& t, const Vec& P, const std::vector<std::vector<int32_t>>& seqs) {
  const int C = cfg.d_model, F = cfg.d_ff, H = cfg.n_heads_out;
  Vec rewards;
  for (const auto& ids : seqs) {
    const int T = static_cast<int>(ids.size());
    Vec x(static_cast<size_t>(T) * C);
    for (int i = 0; i < T; ++i)
      for (int c = 0; c < C; ++c)
        x[static_cast<size_t>(i) * C + c] = P[t.tok_emb + static_cast<size_t>(ids[i]) * C + c] + P[t.pos_emb + static_cast<size_t>(i) * C + c];
    for (const BlockParams& w : t.blocks) {
      Vec a = layernorm(x, &P[w.ln1_w], &P[w.ln1_b], T, C);
      Vec qkv = linear(a, &P[w.qkv_w], &P[w.qkv_b], T, C, 3 * C);
      Vec att = attention(qkv, T, cfg.n_heads, cfg.head_size());
      Vec proj = linear(att, &P[w.proj_w], &P[w.proj_b], T, C, C);
      for (size_t k = 0; k < x.size(); ++k) x[k] += proj[k];
      Vec m = layernorm(x, &P[w.ln2_w], &P[w.ln2_b], T, C);
      Vec fc = linear(m, &P[w.fc_w], &P[w.fc_b], T, C, F);
      for (double& v : fc) v = gelu(v);
      Vec mp = linear(fc, &P[w.mp_w], &P[w.mp_b], T, F, C);
      for (size_t k = 0; k < x.size(); ++k) x[k] += mp[k];
    }
    Vec last(x.end() - C, x.end());
    Vec lf = layernorm(last, &P[t.lnf_w], &P[t.lnf_b], 1, C);
    Vec r = linear(lf, &P[t.head_w], &P[t.head_b], 1, C, H);
    rewards.insert(rewards.end(), r.begin(), r.end());
  }
  return rewards;
}

}  // namespace cairn::ref

namespace cairn::ref {

Vec attention_backward(const Vec& qkv, const Vec& dout, int T, int NH, int HS, bool causal) {
  const int C = NH * HS;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  Vec d(qkv.size(), 0.0);
  auto at = [&](int t, int part, int h, int e) { return static_cast<size_t>(t) * 3 * C + part * C + h * HS + e; };
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < T; ++i) {
      const int n = causal ? i + 1 : T;
      Vec p(n), dp(n);
      double mx = -1e300, z = 0;
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int e = 0; e < HS; ++e) s += qkv[at(i, 0, h, e)] * qkv[at(j, 1, h, e)];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (int j = 0; j < n; ++j) z += (p[j] = std::exp(p[j] - mx));
      for (int j = 0; j < n; ++j) p[j] /= z;
      double pdp = 0;
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int e = 0; e < HS; ++e) s += dout[static_cast<size_t>(i) * C + h * HS + e] * qkv[at(j, 2, h, e)];
        dp[j] = s;
        pdp += p[j] * s;
      }
      for (int j = 0; j < n; ++j) {
        const double ds = p[j] * (dp[j] - pdp) * scale;
        for (int e = 0; e < HS; ++e) {
          d[at(j, 2, h, e)] += p[j] * dout[static_cast<size_t>(i) * C + h * HS + e];
          d[at(i, 0, h, e)] += ds * qkv[at(j, 1, h, e)];
          d[at(j, 1, h, e)] += ds * qkv[at(i, 0, h, e)];
        }
      }
    }
  return d;
}

}  // namespace cairn::ref
