// CPU attention ladder: naive (double accumulation, the reference), GEMM-based (full T×T scores),
// and the flash-style tiled implementation used for training.
// Grouped-query attention: NH query heads share NKV key/value heads (query head h reads k/v head
// h / (NH/NKV)); NKV = NH is ordinary multi-head attention.
// Shared prefixes (backend.h, SeqLayout::prefix_of): a segment that continues a prefix reads the
// prefix's keys in full before its own, causal ones; every rung walks the two key ranges in turn.
// Thread mapping: forward, one work item per (segment, query head) — it owns that head's out and lse
// rows; backward, one per (group, key/value head), a group being a prefix and the segments that
// continue it (or one plain sequence) — it owns dK, dV of that head on the group's rows and dQ of its
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

// x(r, :) = exp(x(r, :) − s[r]), row by row. Rows are contiguous, so Eigen vectorises the exp; over a
// colwise() broadcast it falls back to glibc's scalar expf per element (about 4% of a scoring run).
template <class M, class V>
void exp_rows_shifted(M&& x, const V& s) {
  for (Eigen::Index r = 0; r < x.rows(); ++r) x.row(r).array() = (x.row(r).array() - s[r]).exp();
}

// The rows of one segment and the columns of one query head h and its key/value head g = h / (NH/NKV).
// qkv rows hold [q heads (NH·HS) | k heads (NKV·HS) | v heads (NKV·HS)], W = (NH + 2·NKV)·HS floats.
// A segment that continues a shared prefix (SeqLayout::prefix_of) also reads the P rows of that
// prefix, from row ctx0, in full: its keys are the virtual sequence [prefix rows | own rows], and
// `causal` masks own keys after the query. k_off/v_off take a ROW index, so the two ranges are
// walked separately (KeyRange) and never need to be contiguous.
struct HeadView {
  int T, C, HS, row0, h, seq;  // C = NH·HS (an output row)
  int W, g, NH, NKV;
  int ctx0 = 0, P = 0;         // the shared prefix read before the own rows (P = 0: none)
  size_t q_off(int t) const { return static_cast<size_t>(row0 + t) * W + static_cast<size_t>(h) * HS; }
  size_t k_row(int r) const { return static_cast<size_t>(r) * W + static_cast<size_t>(NH + g) * HS; }
  size_t v_row(int r) const { return static_cast<size_t>(r) * W + static_cast<size_t>(NH + NKV + g) * HS; }
  size_t k_off(int t) const { return k_row(row0 + t); }
  size_t v_off(int t) const { return v_row(row0 + t); }
  size_t o_off(int t) const { return static_cast<size_t>(row0 + t) * C + static_cast<size_t>(h) * HS; }
  HeadView with_head(int q_head) const {
    HeadView v = *this;
    v.h = q_head;
    return v;
  }
};

// A run of key rows a segment attends to: its shared prefix (every key visible to every query) or
// its own rows (masked after the query when causal).
struct KeyRange {
  int row0, len;
  bool own;
};
int key_ranges(const HeadView& v, KeyRange (&r)[2]) {
  int n = 0;
  if (v.P > 0) r[n++] = {v.ctx0, v.P, false};
  r[n++] = {v.row0, v.T, true};
  return n;
}

void flash_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  RowMat S(kBr, kBc), O(kBr, HS);
  Eigen::VectorXf m(kBr), l(kBr), m_new(kBr), shift(kBr), corr(kBr);
  KeyRange ranges[2];
  const int n_ranges = key_ranges(v, ranges);
  for (int i0 = 0; i0 < T; i0 += kBr) {
    const int br = std::min(kBr, T - i0);
    CStrided Q(qkv + v.q_off(i0), br, HS, Eigen::OuterStride<>(v.W));
    auto Ob = O.topRows(br);
    Ob.setZero();
    m.head(br).setConstant(kNegInf);
    l.head(br).setZero();
    for (int k = 0; k < n_ranges; ++k) {
      const KeyRange& kr = ranges[k];
      const bool mask = kr.own && causal;
      const int jend = mask ? i0 + br : kr.len;
      for (int j0 = 0; j0 < jend; j0 += kBc) {
        const int bc = std::min(kBc, jend - j0);
        CStrided K(qkv + v.k_row(kr.row0 + j0), bc, HS, Eigen::OuterStride<>(v.W));
        CStrided V(qkv + v.v_row(kr.row0 + j0), bc, HS, Eigen::OuterStride<>(v.W));
        auto Sb = S.topLeftCorner(br, bc);
        Sb.noalias() = (Q * K.transpose()) * scale;
        if (mask && j0 + bc > i0)  // diagonal tile: key j0+c is visible to query i0+r iff c ≤ i0+r−j0
          for (int r = 0; r < br; ++r)
            for (int c = std::max(0, i0 + r - j0 + 1); c < bc; ++c) Sb(r, c) = kNegInf;
        m_new.head(br) = Sb.rowwise().maxCoeff().cwiseMax(m.head(br));
        for (int r = 0; r < br; ++r)  // a row with nothing visible yet subtracts 0 (its scores are all −inf)
          shift[r] = m_new[r] == kNegInf ? 0.0f : m_new[r];
        exp_rows_shifted(Sb, shift);
        corr.head(br) = (m.head(br) - shift.head(br)).array().exp().matrix();
        l.head(br) = l.head(br).cwiseProduct(corr.head(br)) + Sb.rowwise().sum();
        m.head(br) = m_new.head(br);
        Ob = corr.head(br).asDiagonal() * Ob;
        Ob.noalias() += Sb * V;
      }
    }
    for (int r = 0; r < br; ++r) {
      float* o = out + v.o_off(i0 + r);
      const float inv = 1.0f / l[r];
      for (int d = 0; d < HS; ++d) o[d] = Ob(r, d) * inv;
      lse[static_cast<size_t>(v.row0 + i0 + r) * NH + v.h] = m[r] + std::log(l[r]);
    }
  }
}

// Backward of one segment for one key/value head g: dK, dV of g (own rows and the shared prefix's)
// accumulate over the G = NH/NKV query heads that read it; dQ of each of those heads is assigned.
// The caller zeroes dK, dV first (a prefix gathers from every segment of its group).
void flash_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, bool causal) {
  const int T = vg.T, HS = vg.HS, C = vg.C, NH = vg.NH, G = vg.NH / vg.NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const Eigen::OuterStride<> s3(vg.W), s1(C);
  std::vector<float> D(T);
  RowMat S(kBr, kBc), dP(kBr, kBc);
  KeyRange ranges[2];
  const int n_ranges = key_ranges(vg, ranges);
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
    for (int k = 0; k < n_ranges; ++k) {
      const KeyRange& kr = ranges[k];
      const bool mask = kr.own && causal;
      for (int j0 = 0; j0 < kr.len; j0 += kBc) {
        const int bc = std::min(kBc, kr.len - j0);
        CStrided K(qkv + v.k_row(kr.row0 + j0), bc, HS, s3);
        CStrided V(qkv + v.v_row(kr.row0 + j0), bc, HS, s3);
        Strided dK(dqkv + v.k_row(kr.row0 + j0), bc, HS, s3);
        Strided dV(dqkv + v.v_row(kr.row0 + j0), bc, HS, s3);
        const int i_first = mask ? (j0 / kBr) * kBr : 0;
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
          exp_rows_shifted(Sb, L);  // P, recomputed from the saved lse
          if (mask && j0 + bc > i0)
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
}

// GEMM-based: the whole score matrix of one (segment, head), S = QKᵀ·scale (T × (P+T): the shared
// prefix's columns, then the own ones), masked softmax, O = PV. Backward: dV = Pᵀ·dO, dP = dO·Vᵀ,
// dS = P∘(dP − rowsum(dO∘O)), dQ = dS·K·scale, dK = dSᵀ·Q·scale, each range's columns against its rows.
// O(T²) scratch per work item — the rung the flash version improves on.
void gemm_scores(const HeadView& v, const float* qkv, bool causal, RowMat& S) {
  const int T = v.T, HS = v.HS;
  const Eigen::OuterStride<> s3(v.W);
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  CStrided Q(qkv + v.q_off(0), T, HS, s3);
  S.resize(T, v.P + T);
  KeyRange ranges[2];
  for (int k = 0, n = key_ranges(v, ranges), col = 0; k < n; col += ranges[k].len, ++k) {
    CStrided K(qkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3);
    S.middleCols(col, ranges[k].len).noalias() = (Q * K.transpose()) * scale;
  }
  if (causal)
    for (int r = 0; r < T; ++r) S.row(r).tail(T - r - 1).setConstant(kNegInf);
}

void gemm_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS, C = v.C;
  const Eigen::OuterStride<> s3(v.W);
  thread_local RowMat P;
  gemm_scores(v, qkv, causal, P);
  Eigen::VectorXf mx = P.rowwise().maxCoeff();
  exp_rows_shifted(P, mx);
  Eigen::VectorXf z = P.rowwise().sum();
  P = z.cwiseInverse().asDiagonal() * P;
  Strided O(out + v.o_off(0), T, HS, Eigen::OuterStride<>(C));
  O.setZero();
  KeyRange ranges[2];
  for (int k = 0, n = key_ranges(v, ranges), col = 0; k < n; col += ranges[k].len, ++k) {
    CStrided V(qkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
    O.noalias() += P.middleCols(col, ranges[k].len) * V;
  }
  for (int r = 0; r < T; ++r) lse[static_cast<size_t>(v.row0 + r) * NH + v.h] = mx[r] + std::log(z[r]);
}

// dK, dV accumulate (the caller zeroes them), dQ is assigned.
void gemm_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                         const float* lse, bool causal) {
  const int T = vg.T, HS = vg.HS, C = vg.C, NH = vg.NH, G = vg.NH / vg.NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const Eigen::OuterStride<> s3(vg.W), s1(C);
  thread_local RowMat P, dP;
  KeyRange ranges[2];
  const int n_ranges = key_ranges(vg, ranges);
  for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
    const HeadView v = vg.with_head(h);
    gemm_scores(v, qkv, causal, P);
    Eigen::Map<const Eigen::VectorXf, 0, Eigen::InnerStride<>> L(lse + static_cast<size_t>(v.row0) * NH + v.h, T,
                                                                 Eigen::InnerStride<>(NH));
    exp_rows_shifted(P, L);
    CStrided Q(qkv + v.q_off(0), T, HS, s3);
    CStrided dO(dout + v.o_off(0), T, HS, s1), O(out + v.o_off(0), T, HS, s1);
    Strided dQ(dqkv + v.q_off(0), T, HS, s3);
    dP.resize(T, v.P + T);
    for (int k = 0, col = 0; k < n_ranges; col += ranges[k].len, ++k) {
      CStrided V(qkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
      Strided dV(dqkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
      dV.noalias() += P.middleCols(col, ranges[k].len).transpose() * dO;
      dP.middleCols(col, ranges[k].len).noalias() = dO * V.transpose();
    }
    Eigen::VectorXf D = (dO.array() * O.array()).rowwise().sum();
    dP = (P.array() * (dP.colwise() - D).array() * scale).matrix();
    dQ.setZero();
    for (int k = 0, col = 0; k < n_ranges; col += ranges[k].len, ++k) {
      CStrided K(qkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3);
      Strided dK(dqkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3);
      dQ.noalias() += dP.middleCols(col, ranges[k].len) * K;
      dK.noalias() += dP.middleCols(col, ranges[k].len).transpose() * Q;
    }
  }
}

// Naive reference: double accumulation, full score rows; O(P+T) scratch per query. Key j < P is
// prefix row ctx0 + j, key j ≥ P own row j − P.
void naive_forward_head(const HeadView& v, float* out, float* lse, const float* qkv, int NH, bool causal) {
  const int T = v.T, HS = v.HS, P = v.P;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  std::vector<double> s(P + T), o(HS);
  auto key_row = [&](int j) { return j < P ? v.ctx0 + j : v.row0 + j - P; };
  for (int i = 0; i < T; ++i) {
    const float* q = qkv + v.q_off(i);
    const int jn = P + (causal ? i + 1 : T);
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < jn; ++j) {
      const float* k = qkv + v.k_row(key_row(j));
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
      const float* vv = qkv + v.v_row(key_row(j));
      for (int e = 0; e < HS; ++e) o[e] += p * vv[e];
    }
    for (int e = 0; e < HS; ++e) out[v.o_off(i) + e] = static_cast<float>(o[e] / z);
    lse[static_cast<size_t>(v.row0 + i) * NH + v.h] = static_cast<float>(mx + std::log(z));
  }
}

// dq assigned; dk, dv of every key row it reads accumulate in double into dkv (rows of the group
// starting at group_row0, [dk | dv] of HS each), written once by the caller.
void naive_backward_group(const HeadView& vg, float* dqkv, const float* dout, const float* qkv, const float* out,
                          const float* lse, bool causal, std::vector<double>& dkv, int group_row0) {
  const int T = vg.T, HS = vg.HS, NH = vg.NH, G = vg.NH / vg.NKV, P = vg.P;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  std::vector<double> dq(static_cast<size_t>(T) * HS);
  auto key_row = [&](int j) { return j < P ? vg.ctx0 + j : vg.row0 + j - P; };
  for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
    const HeadView v = vg.with_head(h);
    std::fill(dq.begin(), dq.end(), 0.0);
    for (int i = 0; i < T; ++i) {
      const float* q = qkv + v.q_off(i);
      const float* dO = dout + v.o_off(i);
      double D = 0;
      for (int e = 0; e < HS; ++e) D += static_cast<double>(dO[e]) * out[v.o_off(i) + e];
      const double L = lse[static_cast<size_t>(v.row0 + i) * NH + v.h];
      const int jn = P + (causal ? i + 1 : T);
      for (int j = 0; j < jn; ++j) {
        const int row = key_row(j);
        const float* k = qkv + v.k_row(row);
        const float* vv = qkv + v.v_row(row);
        double sdot = 0, dp = 0;
        for (int e = 0; e < HS; ++e) sdot += static_cast<double>(q[e]) * k[e], dp += static_cast<double>(dO[e]) * vv[e];
        const double p = std::exp(sdot * scale - L), ds = p * (dp - D) * scale;
        double* acc = dkv.data() + static_cast<size_t>(row - group_row0) * 2 * HS;
        for (int e = 0; e < HS; ++e) {
          acc[HS + e] += p * dO[e];
          dq[static_cast<size_t>(i) * HS + e] += ds * k[e];
          acc[e] += ds * q[e];
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < HS; ++e) dqkv[v.q_off(t) + e] = static_cast<float>(dq[static_cast<size_t>(t) * HS + e]);
  }
}

// The packed segments of one call: rows cu[s]..cu[s+1] for segment s, and for each segment the
// shared prefix it continues (prefix_of[s], −1 or a null array: none). A group is a segment with no
// prefix followed by the segments that continue it — the unit of the backward's work split, since
// every segment of a group adds into the prefix's dK, dV.
struct Packing {
  const int32_t* cu;
  int B;
  const int32_t* prefix_of;
  int prefix(int s) const { return prefix_of ? prefix_of[s] : -1; }
};

HeadView head_view(const Packing& pk, int s, int h, int NH, int NKV, int HS) {
  HeadView v{pk.cu[s + 1] - pk.cu[s], NH * HS, HS, pk.cu[s], h, s, (NH + 2 * NKV) * HS, h / (NH / NKV), NH, NKV};
  if (const int g = pk.prefix(s); g >= 0) v.ctx0 = pk.cu[g], v.P = pk.cu[g + 1] - pk.cu[g];
  return v;
}

// The first segment of each group, plus B at the end; throws on a prefix_of that is not a group layout.
std::vector<int> group_starts(const Packing& pk) {
  std::vector<int> starts;
  int leader = -1;
  for (int s = 0; s < pk.B; ++s) {
    const int g = pk.prefix(s);
    if (g < 0) {
      starts.push_back(s), leader = s;
    } else if (g != leader) {
      throw std::invalid_argument("attention: segment " + std::to_string(s) + " continues prefix " + std::to_string(g) +
                                  ", which is not the segment that opens its group");
    }
  }
  starts.push_back(pk.B);
  return starts;
}

// One work item per (segment, query head): the forward passes.
template <class Fn>
void for_each_head(const Packing& pk, int NH, int NKV, int HS, const Fn& fn) {
  group_starts(pk);  // validates the layout
  const long items = static_cast<long>(pk.B) * NH;
#pragma omp parallel for schedule(static)
  for (long w = 0; w < items; ++w) {
    const HeadView v = head_view(pk, static_cast<int>(w / NH), static_cast<int>(w % NH), NH, NKV, HS);
    if (v.T > 0) fn(v);
  }
}

// One work item per (group, key/value head): the backward passes, where the group's query heads all
// add into the same dK, dV, and a group's segments into its prefix's. fn(first, end, g) handles the
// group's segments [first, end) for key/value head g.
template <class Fn>
void for_each_group(const Packing& pk, int NKV, const Fn& fn) {
  const std::vector<int> starts = group_starts(pk);
  const long items = static_cast<long>(starts.size() - 1) * NKV;
#pragma omp parallel for schedule(static)
  for (long w = 0; w < items; ++w) fn(starts[w / NKV], starts[w / NKV + 1], static_cast<int>(w % NKV));
}

// Zeroes dK, dV of key/value head g on rows [r0, r1).
void zero_dkv(float* dqkv, int r0, int r1, int g, int NH, int NKV, int HS) {
  const size_t W = static_cast<size_t>(NH + 2 * NKV) * HS;
  for (int r = r0; r < r1; ++r) {
    std::fill_n(dqkv + r * W + static_cast<size_t>(NH + g) * HS, HS, 0.0f);
    std::fill_n(dqkv + r * W + static_cast<size_t>(NH + NKV + g) * HS, HS, 0.0f);
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
                       int NKV, int HS, bool causal, const int32_t* prefix_of) {
  check_heads(NH, NKV);
  for_each_head(Packing{cu, B, prefix_of}, NH, NKV, HS, [&](const HeadView& v) {
    switch (impl) {
      case AttnImpl::Naive: return naive_forward_head(v, out, lse, qkv, NH, causal);
      case AttnImpl::Gemm: return gemm_forward_head(v, out, lse, qkv, NH, causal);
      case AttnImpl::Flash: return flash_forward_head(v, out, lse, qkv, NH, causal);
    }
  });
}

void attention_backward(AttnImpl impl, float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const int32_t* cu, int B, int NH, int NKV, int HS, bool causal,
                        const int32_t* prefix_of) {
  check_heads(NH, NKV);
  const Packing pk{cu, B, prefix_of};
  for_each_group(pk, NKV, [&](int first, int end, int g) {
    const int r0 = cu[first], r1 = cu[end];
    std::vector<double> dkv;
    if (impl == AttnImpl::Naive) dkv.assign(static_cast<size_t>(r1 - r0) * 2 * HS, 0.0);
    else zero_dkv(dqkv, r0, r1, g, NH, NKV, HS);
    for (int s = first; s < end; ++s) {
      const HeadView v = head_view(pk, s, g * (NH / NKV), NH, NKV, HS);
      if (v.T == 0) continue;
      switch (impl) {
        case AttnImpl::Naive: naive_backward_group(v, dqkv, dout, qkv, out, lse, causal, dkv, r0); break;
        case AttnImpl::Gemm: gemm_backward_group(v, dqkv, dout, qkv, out, lse, causal); break;
        case AttnImpl::Flash: flash_backward_group(v, dqkv, dout, qkv, out, lse, causal); break;
      }
    }
    if (impl != AttnImpl::Naive) return;
    const HeadView v = head_view(pk, first, g * (NH / NKV), NH, NKV, HS);
    for (int r = r0; r < r1; ++r)
      for (int e = 0; e < HS; ++e) {
        dqkv[v.k_row(r) + e] = static_cast<float>(dkv[static_cast<size_t>(r - r0) * 2 * HS + e]);
        dqkv[v.v_row(r) + e] = static_cast<float>(dkv[static_cast<size_t>(r - r0) * 2 * HS + HS + e]);
      }
  });
}

// Last-query attention: the query is the segment's last row, its keys the shared prefix's rows and
// all of its own (columns [prefix | own] as in the GEMM rung).
//   s_j = q·k_j·scale, p = softmax(s), o = Σ p_j v_j;  backward: dv_j = p_j·do, ds_j = p_j(do·v_j − do·o)·scale,
//   dq = Σ ds_j k_j, dk_j = ds_j q  (dk, dv summed over the query heads of a key/value head).
void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu, int B, int NH, int NKV,
                            int HS, const int32_t* prefix_of) {
  check_heads(NH, NKV);
  for_each_head(Packing{cu, B, prefix_of}, NH, NKV, HS, [&](const HeadView& v) {
    const int T = v.T, C = v.C;
    const Eigen::OuterStride<> s3(v.W);
    const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
    Eigen::Map<const Eigen::RowVectorXf> q(qkv + v.q_off(T - 1), HS);
    KeyRange ranges[2];
    const int n = key_ranges(v, ranges);
    Eigen::RowVectorXf p(v.P + T);
    for (int k = 0, col = 0; k < n; col += ranges[k].len, ++k) {
      CStrided K(qkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3);
      p.segment(col, ranges[k].len).noalias() = (q * K.transpose()) * scale;
    }
    const float mx = p.maxCoeff();
    p = (p.array() - mx).exp().matrix();
    const float z = p.sum();
    p /= z;
    Eigen::Map<Eigen::RowVectorXf> o(out + static_cast<size_t>(v.seq) * C + static_cast<size_t>(v.h) * HS, HS);
    o.setZero();
    for (int k = 0, col = 0; k < n; col += ranges[k].len, ++k) {
      CStrided V(qkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
      o.noalias() += p.segment(col, ranges[k].len) * V;
    }
    lse[static_cast<size_t>(v.seq) * NH + v.h] = mx + std::log(z);
  });
}

void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu, int B, int NH, int NKV, int HS, const int32_t* prefix_of) {
  check_heads(NH, NKV);
  const Packing pk{cu, B, prefix_of};
  const int G = NH / NKV, C = NH * HS;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  for_each_group(pk, NKV, [&](int first, int end, int g) {
    zero_dkv(dqkv, cu[first], cu[end], g, NH, NKV, HS);
    for (int s = first; s < end; ++s) {
      const HeadView vg = head_view(pk, s, g * G, NH, NKV, HS);
      const int T = vg.T;
      if (T == 0) continue;
      const Eigen::OuterStride<> s3(vg.W);
      KeyRange ranges[2];
      const int n = key_ranges(vg, ranges);
      for (int h = vg.g * G; h < (vg.g + 1) * G; ++h) {
        const HeadView v = vg.with_head(h);
        Eigen::Map<const Eigen::RowVectorXf> q(qkv + v.q_off(T - 1), HS);
        const size_t row = static_cast<size_t>(v.seq) * C + static_cast<size_t>(v.h) * HS;
        Eigen::Map<const Eigen::RowVectorXf> dO(dout + row, HS), O(out + row, HS);
        const float L = lse[static_cast<size_t>(v.seq) * NH + v.h], dOO = dO.dot(O);
        Strided dQ(dqkv + v.q_off(0), T, HS, s3);
        dQ.setZero();
        for (int k = 0; k < n; ++k) {
          CStrided K(qkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3), V(qkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
          Strided dK(dqkv + v.k_row(ranges[k].row0), ranges[k].len, HS, s3), dV(dqkv + v.v_row(ranges[k].row0), ranges[k].len, HS, s3);
          Eigen::RowVectorXf p = ((q * K.transpose()) * scale).array() - L;
          p = p.array().exp().matrix();
          Eigen::RowVectorXf ds = (p.array() * ((dO * V.transpose()).array() - dOO) * scale).matrix();
          dQ.row(T - 1).noalias() += ds * K;
          dK.noalias() += ds.transpose() * q;
          dV.noalias() += p.transpose() * dO;
        }
      }
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
