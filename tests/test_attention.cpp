// The CPU attention ladder (naive, gemm, flash) against an independent double reference
// (tests/reference), forward and backward, causal and not, on one packed batch of awkward lengths
// (1, 31, 33, 127, 200) and head sizes 24/32/64/128, with random inputs in [-1, 1] and with
// adversarial ±50 logits. Outputs are pre-filled with NaN, so an element never written fails.
// Tolerance: |err| ≤ 2e-5 + 1e-4·|ref| for outputs and lse; gradients scaled by their max |ref|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/attention.h"
#include "reference/model_ref.h"
#include "attention_case.h"
#include "test_util.h"

namespace cairn {
using cpu::AttnImpl;
using test::all_close;

namespace {
using Case = test::AttnCase;

// Reference outputs for the whole packed batch, sequence by sequence.
void reference(const Case& c, bool causal, std::vector<double>* out, std::vector<double>* lse, std::vector<double>* dqkv) {
  const int C = c.C(), W = c.W(), G = c.NH / c.NKV;
  out->clear(), lse->clear(), dqkv->clear();
  for (size_t s = 0; s + 1 < c.cu.size(); ++s) {
    const int T = c.cu[s + 1] - c.cu[s];
    ref::Vec q(c.qkv.begin() + static_cast<size_t>(c.cu[s]) * W, c.qkv.begin() + static_cast<size_t>(c.cu[s + 1]) * W);
    ref::Vec d(c.dout.begin() + static_cast<size_t>(c.cu[s]) * C, c.dout.begin() + static_cast<size_t>(c.cu[s + 1]) * C);
    ref::Vec o = ref::attention(q, T, c.NH, c.NKV, c.HS, causal);
    ref::Vec g = ref::attention_backward(q, d, T, c.NH, c.NKV, c.HS, causal);
    out->insert(out->end(), o.begin(), o.end());
    dqkv->insert(dqkv->end(), g.begin(), g.end());
    for (int i = 0; i < T; ++i)
      for (int h = 0; h < c.NH; ++h) {
        const int n = causal ? i + 1 : T;
        double mx = -1e300, z = 0;
        std::vector<double> sc(n);
        for (int j = 0; j < n; ++j) {
          double x = 0;
          for (int e = 0; e < c.HS; ++e)
            x += q[static_cast<size_t>(i) * W + h * c.HS + e] * q[static_cast<size_t>(j) * W + (c.NH + h / G) * c.HS + e];
          sc[j] = x / std::sqrt(static_cast<double>(c.HS));
          mx = std::max(mx, sc[j]);
        }
        for (double v : sc) z += std::exp(v - mx);
        lse->push_back(mx + std::log(z));
      }
  }
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}
}  // namespace

TEST(Attention, ReferenceBackwardMatchesFiniteDifferences) {
  const int T = 5, HS = 3;
  for (auto [NH, NKV] : {std::pair{2, 2}, std::pair{4, 2}, std::pair{3, 1}})
  for (bool causal : {true, false}) {
    const int C = NH * HS, W = (NH + 2 * NKV) * HS;
    auto qkv = test::to_double(test::rand_vec(T * W, 3)), dout = test::to_double(test::rand_vec(T * C, 4));
    auto g = ref::attention_backward(qkv, dout, T, NH, NKV, HS, causal);
    auto num = ref::fd_grad([&](const ref::Vec& x) {
      auto o = ref::attention(x, T, NH, NKV, HS, causal);
      double s = 0;
      for (size_t i = 0; i < o.size(); ++i) s += o[i] * dout[i];
      return s;
    }, qkv);
    EXPECT_TRUE(all_close(g, num, 1e-8, 1e-6));
  }
}

// Query heads over key/value heads: 2/2 (multi-head), 4/2 and 3/1 (grouped-query).
class AttentionLadder : public ::testing::TestWithParam<std::tuple<AttnImpl, int, bool, float, std::pair<int, int>>> {};

TEST_P(AttentionLadder, ForwardAndBackwardMatchReference) {
  const auto [impl, HS, causal, logit, heads] = GetParam();
  const auto [NH, NKV] = heads;
  const int C = NH * HS;
  Case c = test::make_attn_case({1, 31, 33, 127, 200}, NH, NKV, HS, logit, 11 + HS);
  std::vector<double> ro, rl, rg;
  reference(c, causal, &ro, &rl, &rg);
  const int B = static_cast<int>(c.cu.size()) - 1, N = c.N();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> out(static_cast<size_t>(N) * C, nan), lse(static_cast<size_t>(N) * NH, nan),
      dqkv(static_cast<size_t>(N) * c.W(), nan);
  cpu::attention_forward(impl, out.data(), lse.data(), c.qkv.data(), c.cu.data(), B, NH, NKV, HS, causal);
  cpu::attention_backward(impl, dqkv.data(), c.dout.data(), c.qkv.data(), out.data(), lse.data(), c.cu.data(), B, NH,
                          NKV, HS, causal);
  // lse is stored [N, NH]; the reference lists it per (token, head) in the same order.
  EXPECT_TRUE(all_close(out, ro, 2e-5, 1e-4)) << "forward";
  EXPECT_TRUE(all_close(lse, rl, 2e-5 * (1 + logit), 1e-5)) << "lse";
  const double gscale = max_abs(rg);
  EXPECT_TRUE(all_close(dqkv, rg, 2e-5 * gscale * (1 + logit / 10), 1e-3)) << "backward (max |grad| " << gscale << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, AttentionLadder,
    ::testing::Combine(::testing::Values(AttnImpl::Naive, AttnImpl::Gemm, AttnImpl::Flash), ::testing::Values(24, 32, 64, 128),
                       ::testing::Bool(), ::testing::Values(1.0f, 50.0f),
                       ::testing::Values(std::pair{2, 2}, std::pair{4, 2}, std::pair{3, 1})),
    [](const auto& info) {
      const auto heads = std::get<4>(info.param);
      return std::string(cpu::attn_impl_name(std::get<0>(info.param))) + "_d" + std::to_string(std::get<1>(info.param)) +
             (std::get<2>(info.param) ? "_causal" : "_full") + (std::get<3>(info.param) > 10 ? "_logits50" : "") +
             "_h" + std::to_string(heads.first) + "kv" + std::to_string(heads.second);
    });

TEST(Attention, FlashIsDeterministicAndAgreesWithGemm) {
  Case c = test::make_attn_case({300, 77, 129}, 4, 4, 64, 1.0f, 5);
  const int B = 3, N = c.N(), C = 4 * 64;
  std::vector<float> o1(N * C), l1(N * 4), g1(N * c.W()), o2(N * C), l2(N * 4), g2(N * c.W());
  cpu::attention_forward(AttnImpl::Flash, o1.data(), l1.data(), c.qkv.data(), c.cu.data(), B, 4, 4, 64, true);
  cpu::attention_backward(AttnImpl::Flash, g1.data(), c.dout.data(), c.qkv.data(), o1.data(), l1.data(), c.cu.data(), B, 4, 4, 64, true);
  cpu::attention_forward(AttnImpl::Flash, o2.data(), l2.data(), c.qkv.data(), c.cu.data(), B, 4, 4, 64, true);
  cpu::attention_backward(AttnImpl::Flash, g2.data(), c.dout.data(), c.qkv.data(), o2.data(), l2.data(), c.cu.data(), B, 4, 4, 64, true);
  EXPECT_EQ(0, std::memcmp(o1.data(), o2.data(), o1.size() * 4));
  EXPECT_EQ(0, std::memcmp(g1.data(), g2.data(), g1.size() * 4));
  std::vector<float> og(N * C), lg(N * 4);
  cpu::attention_forward(AttnImpl::Gemm, og.data(), lg.data(), c.qkv.data(), c.cu.data(), B, 4, 4, 64, true);
  EXPECT_TRUE(all_close(o1, og, 1e-5, 1e-4));
}

TEST(Attention, FlashWorkspaceIsLinearInSequenceLength) {
  for (int T : {1024, 2048, 4096}) {
    std::vector<int32_t> cu = {0, T};
    const size_t flash = cpu::attention_workspace_bytes(AttnImpl::Flash, cu.data(), 1, 8, 64, false);
    const size_t gemm = cpu::attention_workspace_bytes(AttnImpl::Gemm, cu.data(), 1, 8, 64, false);
    std::vector<int32_t> cu2 = {0, 2 * T};
    EXPECT_LE(cpu::attention_workspace_bytes(AttnImpl::Flash, cu2.data(), 1, 8, 64, false), 2 * flash);
    EXPECT_GE(cpu::attention_workspace_bytes(AttnImpl::Gemm, cu2.data(), 1, 8, 64, false), 3 * gemm);
  }
}

}  // namespace cairn
