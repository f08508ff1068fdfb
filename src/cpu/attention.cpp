// CPU attention ladder: naive (double accumulation, the reference), GEMM-based (full T×T scores),
// and the flash-style tiled implementation used for training.
// Grouped-query attention: NH query heads share NKV key/value heads (query head h reads k/v head
// h / (NH/NKV)); NKV = NH is ordinary multi-head attention.
// Thread mapping: forward, one work item per (sequence, query head) — it owns that head's out and lse
// rows; backward, one per (sequence, key/value head) — it owns dK, dV of that head and dQ of its
// query heads. No two threads write the same element, so results are bit-identical for a given
// thread count. Accumulation in fp32 (the naive reference: double).
//
// Forward (per query tile Qi of Br rows, over key/value tiles Kj, Vj of Bc rows, j ≤ i when causal):
//   S = Qi·Kjᵀ·scale (masked);  m' = max(m, rowmax S);  P = exp(S − m')
//   l = l·exp(m − m') + rowsum P;  O = O·exp(m − m') + P·Vj;  finally O /= l, lse = m + log l
// Backward (recomputes P = exp(S − lse) tile by tile; D = rowsum(dO∘O)):
//   dVj += Pᵀ·dOi;  dP = dOi·Vjᵀ;  dS = P∘(dP − D);  dQi += dS·Kj·scale;  dKj += dSᵀ·Qi·scale
#include "cpu/attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include <omp.h>

namespace cairn::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using CStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
constexpr int kBr = 64, kBc = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The rows of one sequence and the columns of one query head h and its key/value head g = h / (NH/NKV).
// qkv rows hold [q heads (NH·HS) | k heads (NKV·HS) | v heads (NKV·HS)], W = (NH + 2·NKV)·HS floats.
struct HeadView {
  int T, C, HS, row0, h, seq;  // C = NH·HS (an output row)
  int W, g, NH, NKV;
  size_t q_off(int t) const { return static_cast<size_t>(row0 + t) * W + static_cast<size_t>(h) * HS; }
  size_t k_off(int t) const { return static_cast<size_t>(row0 + t) * W + static_cast<size_t>(NH + g) * HS; }
  size_t v_off(int t) const { return static_cast<size_t>(row0 + t) * W + static_cast<size_t>(NH + NKV + g) * HS; }
  size_t o_off(int t) const { return static_cast<size_t>(row0 + t) * C + static_cast<size_t>(h) * HS; }
  HeadView with_head(int q_head) const {
    HeadView v = *this;
    v.h = q_head;
    return v;
  }
};

void flash_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  RowMat S(kBr, kBc), O(kBr, HS);
  Eigen::VectorXf m(kBr), l(kBr), m_new(kBr), shift(kBr), corr(kBr);
  for (int i0 = 0; i0 < T; i0 += kBr) {
    const int br = std::min(kBr, T - i0);
    CStrided Q(qkv + v.q_off(i0), br, HS, Eigen::OuterStride<>(v.W));
    auto Ob = O.topRows(br);
    Ob.setZero();
    m.head(br).setConstant(kNegInf);
    l.head(br).setZero();
    const int jend = causal ? i0 + br : T;
    for (int j0 = 0; j0 < jend; j0 += kBc) {
      const int bc = std::min(kBc, jend - j0);
      CStrided K(qkv + v.k_off(j0), bc, HS, Eigen::OuterStride<>(v.W));
      CStrided V(qkv + v.v_off(j0), bc, HS, Eigen::OuterStride<>(v.W));
      auto Sb = S.topLeftCorner(br, bc);
      Sb.noalias() = (Q * K.transpose()) * scale;
      if (causal && j0 + bc > i0)  // diagonal tile: key j0+c is visible to query i0+r iff c ≤ i0+r−j0
        for (int r = 0; r < br; ++r)
          for (int c = std::max(0, i0 + r - j0 + 1); c < bc; ++c) Sb(r, c) = kNegInf;
      m_new.head(br) = Sb.rowwise().maxCoeff().cwiseMax(m.head(br));
      for (int r = 0; r < br; ++r)  // a row with nothing visible yet subtracts 0 (its scores are all −inf)
        shift[r] = m_new[r] == kNegInf ? 0.0f : m_new[r];
      Sb = (Sb.colwise() - shift.head(br)).array().exp().matrix();
      corr.head(br) = (m.head(br) - shift.head(br)).array().exp().matrix();
      l.head(br) = l.head(br).cwiseProduct(corr.head(br)) + Sb.rowwise().sum();
      m.head(br) = m_new.head(br);
      Ob = corr.head(br).asDiagonal() * Ob;
      Ob.noalias() += Sb * V;
    }
    for (int r = 0; r < br; ++r) {
      float* o = out + v.o_off(i0 + r);
      const float inv = 1.0f / l[r];
      for (int d = 0; d < HS; ++d) o[d] = Ob(r, d) * inv;
      lse[static_cast<size_t>(v.row0 + i0 + r) * NH + v.h] = m[r] + std::log(l[r]);
    }
  }
}

// Backward of one key/value head g: dK, dV of g accumulate over the G = NH/NKV query heads that read
// it (this work item owns them), dQ of each of those heads is its own.
void flash_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, bool causal) {
  const int T = vg.T, HS = vg.HS, C = vg.C, NH = vg.NH, G = vg.NH / vg.NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const Eigen::OuterStride<> s3(vg.W), s1(C);
  for (int t = 0; t < T; ++t) std::fill_n(dqkv + vg.k_off(t), HS, 0.0f), std::fill_n(dqkv + vg.v_off(t), HS, 0.0f);
  std::vector<float> D(T);
  RowMat S(kBr, kBc), dP(kBr, kBc);
  for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
    const HeadView v = vg.with_head(h);
    for (int t = 0; t < T; ++t) {
      std::fill_n(dqkv + v.q_off(t), HS, 0.0f);
      const float* o = out + v.o_off(t);
      const float* d = dout + v.o_off(t);
      float sum = 0.0f;
      for (int e = 0; e < HS; ++e) sum += o[e] * d[e];
      D[t] = sum;
    }
    for (int j0 = 0; j0 < T; j0 += kBc) {
      const int bc = std::min(kBc, T - j0);
      CStrided K(qkv + v.k_off(j0), bc, HS, s3);
      CStrided V(qkv + v.v_off(j0), bc, HS, s3);
      Strided dK(dqkv + v.k_off(j0), bc, HS, s3);
      Strided dV(dqkv + v.v_off(j0), bc, HS, s3);
      const int i_first = causal ? (j0 / kBr) * kBr : 0;
      for (int i0 = i_first; i0 < T; i0 += kBr) {
        const int br = std::min(kBr, T - i0);
        CStrided Q(qkv + v.q_off(i0), br, HS, s3);
        CStrided dO(dout + v.o_off(i0), br, HS, s1);
        Strided dQ(dqkv + v.q_off(i0), br, HS, s3);
        auto Sb = S.topLeftCorner(br, bc);
        auto dPb = dP.topLeftCorner(br, bc);
        Sb.noalias() = (Q * K.transpose()) * scale;
        Eigen::Map<const Eigen::VectorXf, 0, Eigen::InnerStride<>> L(lse + static_cast<size_t>(v.row0 + i0) * NH + v.h,
                                                                     br, Eigen::InnerStride<>(NH));
        Sb = (Sb.colwise() - L).array().exp().matrix();  // P, recomputed from the saved lse
        if (causal && j0 + bc > i0)
          for (int r = 0; r < br; ++r)
            for (int c = std::max(0, i0 + r - j0 + 1); c < bc; ++c) Sb(r, c) = 0.0f;
        dV.noalias() += Sb.transpose() * dO;
        dPb.noalias() = dO * V.transpose();
        dPb = (Sb.array() * (dPb.colwise() - Eigen::Map<const Eigen::VectorXf>(D.data() + i0, br)).array() * scale).matrix();
        dQ.noalias() += dPb * K;
        dK.noalias() += dPb.transpose() * Q;
      }
    }
  }
}

// GEMM-based: the whole score matrix of one (sequence, head), S = QKᵀ·scale (T×T), masked softmax,
// O = PV. Backward: dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)), dQ = dS·K·scale, dK = dSᵀ·Q·scale.
// O(T²) scratch per work item — the rung the flash version improves on.
void gemm_scores(const HeadView& v, const float* qkv, bool causal, RowMat& P) {
  const int T = v.T, HS = v.HS;
  const Eigen::OuterStride<> s3(v.W);
  CStrided Q(qkv + v.q_off(0), T, HS, s3), K(qkv + v.k_off(0), T, HS, s3);
  P.resize(T, T);
  P.noalias() = (Q * K.transpose()) * (1.0f / std::sqrt(static_cast<float>(HS)));
  if (causal)
    for (int r = 0; r < T; ++r) P.row(r).tail(T - r - 1).setConstant(kNegInf);
}

void gemm_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS, C = v.C;
  thread_local RowMat P;
  gemm_scores(v, qkv, causal, P);
  Eigen::VectorXf mx = P.rowwise().maxCoeff();
  P = (P.colwise() - mx).array().exp().matrix();
  Eigen::VectorXf z = P.rowwise().sum();
  P = z.cwiseInverse().asDiagonal() * P;
  CStrided V(qkv + v.v_off(0), T, HS, Eigen::OuterStride<>(v.W));
  Strided O(out + v.o_off(0), T, HS, Eigen::OuterStride<>(C));
  O.noalias() = P * V;
  for (int r = 0; r < T; ++r) lse[static_cast<size_t>(v.row0 + r) * NH + v.h] = mx[r] + std::log(z[r]);
}

void gemm_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                         const float* lse, bool causal) {
  const int T = vg.T, HS = vg.HS, C = vg.C, NH = vg.NH, G = vg.NH / vg.NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const Eigen::OuterStride<> s3(vg.W), s1(C);
  thread_local RowMat P, dP;
  Strided dK(dqkv + vg.k_off(0), T, HS, s3), dV(dqkv + vg.v_off(0), T, HS, s3);
  dK.setZero(), dV.setZero();
  for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
    const HeadView v = vg.with_head(h);
    gemm_scores(v, qkv, causal, P);
    Eigen::Map<const Eigen::VectorXf, 0, Eigen::InnerStride<>> L(lse + static_cast<size_t>(v.row0) * NH + v.h, T,
                                                                 Eigen::InnerStride<>(NH));
    P = (P.colwise() - L).array().exp().matrix();
    CStrided Q(qkv + v.q_off(0), T, HS, s3), K(qkv + v.k_off(0), T, HS, s3), V(qkv + v.v_off(0), T, HS, s3);
    CStrided dO(dout + v.o_off(0), T, HS, s1), O(out + v.o_off(0), T, HS, s1);
    Strided dQ(dqkv + v.q_off(0), T, HS, s3);
    dV.noalias() += P.transpose() * dO;
    dP.resize(T, T);
    dP.noalias() = dO * V.transpose();
    Eigen::VectorXf D = (dO.array() * O.array()).rowwise().sum();
    dP = (P.array() * (dP.colwise() - D).array() * scale).matrix();
    dQ.noalias() = dP * K;
    dK.noalias() += dP.transpose() * Q;
  }
}

// Naive reference: double accumulation, full score rows; O(T) scratch per query.
void naive_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  std::vector<double> s(T), o(HS);
  for (int i = 0; i < T; ++i) {
    const float* q = qkv + v.q_off(i);
    const int jn = causal ? i + 1 : T;
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < jn; ++j) {
      const float* k = qkv + v.k_off(j);
      double d = 0;
      for (int e = 0; e < HS; ++e) d += static_cast<double>(q[e]) * k[e];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double z = 0;
    std::fill(o.begin(), o.end(), 0.0);
    for (int j = 0; j < jn; ++j) {
      const double p = std::exp(s[j] - mx);
      z += p;
      const float* vv = qkv + v.v_off(j);
      for (int e = 0; e < HS; ++e) o[e] += p * vv[e];
    }
    for (int e = 0; e < HS; ++e) out[v.o_off(i) + e] = static_cast<float>(o[e] / z);
    lse[static_cast<size_t>(v.row0 + i) * NH + v.h] = static_cast<float>(mx + std::log(z));
  }
}

void naive_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, bool causal) {
  const int T = vg.T, HS = vg.HS, NH = vg.NH, G = vg.NH / vg.NKV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  std::vector<double> dq(static_cast<size_t>(T) * HS), dk(dq.size(), 0.0), dv(dq.size(), 0.0);
  for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
    const HeadView v = vg.with_head(h);
    std::fill(dq.begin(), dq.end(), 0.0);
    for (int i = 0; i < T; ++i) {
      const float* q = qkv + v.q_off(i);
      const float* dO = dout + v.o_off(i);
      double D = 0;
      for (int e = 0; e < HS; ++e) D += static_cast<double>(dO[e]) * out[v.o_off(i) + e];
      const double L = lse[static_cast<size_t>(v.row0 + i) * NH + v.h];
      const int jn = causal ? i + 1 : T;
      for (int j = 0; j < jn; ++j) {
        const float* k = qkv + v.k_off(j);
        const float* vv = qkv + v.v_off(j);
        double sdot = 0, dp = 0;
        for (int e = 0; e < HS; ++e) sdot += static_cast<double>(q[e]) * k[e], dp += static_cast<double>(dO[e]) * vv[e];
        const double p = std::exp(sdot * scale - L), ds = p * (dp - D) * scale;
        for (int e = 0; e < HS; ++e) {
          dv[static_cast<size_t>(j) * HS + e] += p * dO[e];
          dq[static_cast<size_t>(i) * HS + e] += ds * k[e];
          dk[static_cast<size_t>(j) * HS + e] += ds * q[e];
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < HS; ++e) dqkv[v.q_off(t) + e] = static_cast<float>(dq[static_cast<size_t>(t) * HS + e]);
  }
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < HS; ++e) {
      dqkv[vg.k_off(t) + e] = static_cast<float>(dk[static_cast<size_t>(t) * HS + e]);
      dqkv[vg.v_off(t) + e] = static_cast<float>(dv[static_cast<size_t>(t) * HS + e]);
    }
}

HeadView head_view(const int32_t* cu, int s, int h, int NH, int NKV, int HS) {
  return HeadView{cu[s + 1] - cu[s], NH * HS, HS, cu[s], h, s, (NH + 2 * NKV) * HS, h / (NH / NKV), NH, NKV};
}

// One work item per (sequence, query head): the forward passes.
template <class Fn>
void for_each_head(const int32_t* cu, int B, int NH, int NKV, int HS, const Fn& fn) {
  const long items = static_cast<long>(B) * NH;
#pragma omp parallel for schedule(static)
  for (long w = 0; w < items; ++w) {
    const HeadView v = head_view(cu, static_cast<int>(w / NH), static_cast<int>(w % NH), NH, NKV, HS);
    if (v.T > 0) fn(v);
  }
}

// One work item per (sequence, key/value head), the view on its first query head: the backward
// passes, where the group's query heads all add into the same dK, dV.
template <class Fn>
void for_each_group(const int32_t* cu, int B, int NH, int NKV, int HS, const Fn& fn) {
  const long items = static_cast<long>(B) * NKV;
#pragma omp parallel for schedule(static)
  for (long w = 0; w < items; ++w) {
    const int g = static_cast<int>(w % NKV);
    const HeadView v = head_view(cu, static_cast<int>(w / NKV), g * (NH / NKV), NH, NKV, HS);
    if (v.T > 0) fn(v);
  }
}

void check_heads(int NH, int NKV) {
  if (NKV < 1 || NH < 1 || NH % NKV != 0)
    throw std::invalid_argument("attention: the query heads must be a multiple of the key/value heads");
}

}  // namespace

const char* attn_impl_name(AttnImpl impl) {
  switch (impl) {
    case AttnImpl::Naive: return "naive";
    case AttnImpl::Gemm: return "gemm";
    case AttnImpl::Flash: return "flash";
  }
  return "?";
}

AttnImpl parse_attn_impl(const std::string& name) {
  if (name == "naive") return AttnImpl::Naive;
  if (name == "gemm") return AttnImpl::Gemm;
  if (name == "flash") return AttnImpl::Flash;
  throw std::invalid_argument("unknown attention implementation '" + name + "' (naive, gemm, flash)");
}

void attention_forward(AttnImpl impl, float* out, float* lse, const float* qkv, const int32_t* cu, int B, int NH,
                       int NKV, int HS, bool causal) {
  check_heads(NH, NKV);
  for_each_head(cu, B, NH, NKV, HS, [&](const HeadView& v) {
    switch (impl) {
      case AttnImpl::Naive: return naive_forward_head(v, out, lse, qkv, NH, causal);
      case AttnImpl::Gemm: return gemm_forward_head(v, out, lse, qkv, NH, causal);
      case AttnImpl::Flash: return flash_forward_head(v, out, lse, qkv, NH, causal);
    }
  });
}

void attention_backward(AttnImpl impl, float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const int32_t* cu, int B, int NH, int NKV, int HS, bool causal) {
  check_heads(NH, NKV);
  for_each_group(cu, B, NH, NKV, HS, [&](const HeadView& v) {
    switch (impl) {
      case AttnImpl::Naive: return naive_backward_group(v, dqkv, dout, qkv, out, lse, causal);
      case AttnImpl::Gemm: return gemm_backward_group(v, dqkv, dout, qkv, out, lse, causal);
      case AttnImpl::Flash: return flash_backward_group(v, dqkv, dout, qkv, out, lse, causal);
    }
  });
}

// Last-query attention: the query is the sequence's last row.
//   s_j = q·k_j·scale, p = softmax(s), o = Σ p_j v_j;  backward: dv_j = p_j·do, ds_j = p_j(do·v_j − do·o)·scale,
//   dq = Σ ds_j k_j, dk_j = ds_j q  (dk, dv summed over the query heads of a key/value head).
void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu, int B, int NH, int NKV,
                            int HS) {
  check_heads(NH, NKV);
  for_each_head(cu, B, NH, NKV, HS, [&](const HeadView& v) {
    const int T = v.T, C = v.C;
    const Eigen::OuterStride<> s3(v.W);
    Eigen::Map<const Eigen::RowVectorXf> q(qkv + v.q_off(T - 1), HS);
    CStrided K(qkv + v.k_off(0), T, HS, s3), V(qkv + v.v_off(0), T, HS, s3);
    Eigen::RowVectorXf p = (q * K.transpose()) / std::sqrt(static_cast<float>(HS));
    const float mx = p.maxCoeff();
    p = (p.array() - mx).exp().matrix();
    const float z = p.sum();
    Eigen::Map<Eigen::RowVectorXf> o(out + static_cast<size_t>(v.seq) * C + static_cast<size_t>(v.h) * HS, HS);
    o.noalias() = (p / z) * V;
    lse[static_cast<size_t>(v.seq) * NH + v.h] = mx + std::log(z);
  });
}

void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu, int B, int NH, int NKV, int HS) {
  check_heads(NH, NKV);
  for_each_group(cu, B, NH, NKV, HS, [&](const HeadView& vg) {
    const int T = vg.T, C = vg.C, G = NH / NKV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
    const Eigen::OuterStride<> s3(vg.W);
    CStrided K(qkv + vg.k_off(0), T, HS, s3), V(qkv + vg.v_off(0), T, HS, s3);
    Strided dK(dqkv + vg.k_off(0), T, HS, s3), dV(dqkv + vg.v_off(0), T, HS, s3);
    dK.setZero(), dV.setZero();
    for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
      const HeadView v = vg.with_head(h);
      Eigen::Map<const Eigen::RowVectorXf> q(qkv + v.q_off(T - 1), HS);
      const size_t row = static_cast<size_t>(v.seq) * C + static_cast<size_t>(v.h) * HS;
      Eigen::Map<const Eigen::RowVectorXf> dO(dout + row, HS), O(out + row, HS);
      Eigen::RowVectorXf p = ((q * K.transpose()) * scale).array() - lse[static_cast<size_t>(v.seq) * NH + v.h];
      p = p.array().exp().matrix();
      Eigen::RowVectorXf ds = (p.array() * ((dO * V.transpose()).array() - dO.dot(O)) * scale).matrix();
      Strided dQ(dqkv + v.q_off(0), T, HS, s3);
      dQ.setZero();
      dQ.row(T - 1).noalias() = ds * K;
      dK.noalias() += ds.transpose() * q;
      dV.noalias() += p.transpose() * dO;
    }
  });
}

size_t attention_workspace_bytes(AttnImpl impl, const int32_t* cu, int B, int /*NH*/, int HS, bool forward_only) {
  size_t T = 0;
  for (int s = 0; s < B; ++s) T = std::max<size_t>(T, cu[s + 1] - cu[s]);
  const size_t threads = static_cast<size_t>(omp_get_max_threads());
  switch (impl) {
    case AttnImpl::Naive:  // scores + output row (double) per thread; backward: dq, dk, dv (double) of one head
      return threads * ((T + HS) * sizeof(double) + (forward_only ? 0 : 3 * T * HS * sizeof(double)));
    case AttnImpl::Gemm:  // P (and dP) of T×T floats per thread, plus row statistics
      return threads * ((forward_only ? 1 : 2) * T * T + 2 * T) * sizeof(float);
    case AttnImpl::Flash:  // S and O tiles + row statistics; backward: S, dP tiles and D (T floats)
      return threads * (forward_only ? (kBr * kBc + kBr * HS + 5 * kBr) : (2 * kBr * kBc + T)) * sizeof(float);
  }
  return 0;
}

}  // namespace cairn::cpu
