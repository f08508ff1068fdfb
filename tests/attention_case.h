// A packed batch of random attention inputs for the attention tests (CPU ladder and GPU kernels):
// sequences of the given lengths, NH query heads over NKV key/value heads of size HS, qkv rows
// [q (NH·HS) | k (NKV·HS) | v (NKV·HS)] in [-1, 1] with q and k scaled so that q·k/√HS reaches
// ±logit_scale (the softmax must stay stable), and an upstream gradient dout[N, NH·HS].
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace cairn::test {

struct AttnCase {
  std::vector<int32_t> cu;
  int NH = 1, NKV = 1, HS = 1;
  std::vector<float> qkv, dout;
  int N() const { return cu.back(); }
  int B() const { return static_cast<int>(cu.size()) - 1; }
  int W() const { return (NH + 2 * NKV) * HS; }  // floats per qkv row
  int C() const { return NH * HS; }              // floats per output row
  int max_len() const {
    int m = 0;
    for (int b = 0; b < B(); ++b) m = std::max(m, cu[b + 1] - cu[b]);
    return m;
  }
};

inline AttnCase make_attn_case(const std::vector<int>& lens, int NH, int NKV, int HS, float logit_scale, uint64_t seed) {
  AttnCase c;
  c.cu = {0};
  for (int L : lens) c.cu.push_back(c.cu.back() + L);
  c.NH = NH, c.NKV = NKV, c.HS = HS;
  c.qkv = rand_vec(static_cast<size_t>(c.N()) * c.W(), seed);
  const float s = std::sqrt(logit_scale * std::sqrt(static_cast<float>(HS)) / (HS / 3.0f));
  for (int n = 0; n < c.N(); ++n)
    for (int k = 0; k < (NH + NKV) * HS; ++k) c.qkv[static_cast<size_t>(n) * c.W() + k] *= s;
  c.dout = rand_vec(static_cast<size_t>(c.N()) * c.C(), seed + 1);
  return c;
}

}  // namespace cairn::test
