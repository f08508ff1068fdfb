// Shared-prefix packing (docs/model.md#prefix-sharing): a pair packed as [prefix | chosen rest |
// rejected rest] must give the rewards, loss and gradients of the two sequences packed apart.
//   - the two-branch mask: a double reference under an explicit visibility mask, checked by finite
//     differences; every CPU rung (naive, gemm, flash; full attention and the last-query one)
//     against it on packed groups (prefix of 1 token and of more than a tile, branches of 1 token,
//     three branches, groups next to plain sequences; multi-head and grouped-query);
//   - the whole model, both families: rewards, BT loss and every parameter gradient with sharing
//     equal those without (prefixes of 0, 1 and all-but-one tokens, one sequence a prefix of the
//     other, long prefixes), with frozen blocks too.
// Tolerances: attention as tests/test_attention.cpp (|err| ≤ 2e-5 + 1e-4·|ref|, gradients scaled by
// their largest reference value); model rewards 2e-5 relative, gradients 1e-4 of the largest.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include <nlohmann/json.hpp>

#include "attention_case.h"
#include "cairn/backend.h"
#include "cairn/model.h"
#include "cairn/objective.h"
#include "cairn/tokenizer.h"
#include "cpu/attention.h"
#include "model_helpers.h"
#include "reference/model_ref.h"
#include "test_tmpdir.h"
#include "test_util.h"
#include "util/rng.h"

namespace cairn {
namespace {
using cpu::AttnImpl;
using test::all_close;

// A packing: segment lengths and, per segment, the segment it continues (−1: none).
struct Packing {
  std::vector<int> lens;
  std::vector<int32_t> prefix_of;
  std::vector<int32_t> cu() const {
    std::vector<int32_t> c = {0};
    for (int L : lens) c.push_back(c.back() + L);
    return c;
  }
  // visible(i, j) over the packed rows: causal within a segment, and all of the prefix it continues.
  ref::Visible visible() const {
    const std::vector<int32_t> c = cu();
    std::vector<int> seg(c.back());
    for (size_t s = 0; s < lens.size(); ++s)
      for (int r = c[s]; r < c[s + 1]; ++r) seg[r] = static_cast<int>(s);
    return [c, seg, p = prefix_of](int i, int j) {
      const int si = seg[i], sj = seg[j];
      return (si == sj && j <= i) || (p[si] >= 0 && sj == p[si]);
    };
  }
};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

TEST(PrefixAttention, MaskedReferenceBackwardMatchesFiniteDifferences) {
  // [prefix 3 | branch 2 | branch 1] then a plain sequence of 2
  const Packing pk{{3, 2, 1, 2}, {-1, 0, 0, -1}};
  const int T = 8, HS = 3;
  for (auto [NH, NKV] : {std::pair{2, 2}, std::pair{4, 2}}) {
    const int C = NH * HS, W = (NH + 2 * NKV) * HS;
    auto qkv = test::to_double(test::rand_vec(T * W, 21)), dout = test::to_double(test::rand_vec(T * C, 22));
    const ref::Visible vis = pk.visible();
    auto g = ref::attention_masked_backward(qkv, dout, T, NH, NKV, HS, vis);
    auto num = ref::fd_grad([&](const ref::Vec& x) {
      auto o = ref::attention_masked(x, T, NH, NKV, HS, vis);
      double s = 0;
      for (size_t i = 0; i < o.size(); ++i) s += o[i] * dout[i];
      return s;
    }, qkv);
    EXPECT_TRUE(all_close(g, num, 1e-8, 1e-6));
    // The mask is really two-branch: a branch row ignores the other branch (its keys get no gradient
    // from it), which the plain causal reference over all 8 rows would not.
    auto causal = ref::attention_backward(qkv, dout, T, NH, NKV, HS, true);
    EXPECT_FALSE(all_close(g, causal, 1e-6, 1e-6));
  }
}

// (packing, NH, NKV, HS)
const std::vector<Packing>& packings() {
  static const std::vector<Packing> p = {
      {{1, 5, 1}, {-1, 0, 0}},                          // prefix of one token, a branch of one
      {{70, 40, 300}, {-1, 0, 0}},                      // prefix over a query tile, a branch over a key tile
      {{33, 300, 1, 65, 2}, {-1, -1, 1, 1, 1}},         // a plain sequence, then a long prefix with 3 branches
      {{9, 12, 7, 20, 260, 3}, {-1, 0, 0, -1, 3, 3}},   // two groups back to back
  };
  return p;
}

class PrefixLadder : public ::testing::TestWithParam<std::tuple<AttnImpl, int, std::pair<int, int>>> {};

TEST_P(PrefixLadder, ForwardBackwardAndLastQueryMatchTheMaskedReference) {
  const auto [impl, HS, heads] = GetParam();
  const auto [NH, NKV] = heads;
  const int C = NH * HS;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t k = 0; k < packings().size(); ++k) {
    const Packing& pk = packings()[k];
    test::AttnCase c = test::make_attn_case(pk.lens, NH, NKV, HS, 1.0f, 40 + k);
    const int N = c.N(), B = c.B(), W = c.W();
    const ref::Visible vis = pk.visible();
    const ref::Vec q = test::to_double(c.qkv), d = test::to_double(c.dout);
    const ref::Vec ro = ref::attention_masked(q, N, NH, NKV, HS, vis);
    const ref::Vec rg = ref::attention_masked_backward(q, d, N, NH, NKV, HS, vis);
    std::vector<float> out(static_cast<size_t>(N) * C, nan), lse(static_cast<size_t>(N) * NH, nan),
        dqkv(static_cast<size_t>(N) * W, nan);
    cpu::attention_forward(impl, out.data(), lse.data(), c.qkv.data(), c.cu.data(), B, NH, NKV, HS, true,
                           pk.prefix_of.data());
    cpu::attention_backward(impl, dqkv.data(), c.dout.data(), c.qkv.data(), out.data(), lse.data(), c.cu.data(), B, NH,
                            NKV, HS, true, pk.prefix_of.data());
    EXPECT_TRUE(all_close(out, ro, 2e-5, 1e-4)) << "forward, packing " << k;
    EXPECT_TRUE(all_close(dqkv, rg, 2e-5 * max_abs(rg), 1e-3)) << "backward, packing " << k;

    // Last-query attention: the masked reference with an upstream gradient on the last rows only.
    std::vector<double> ro_last, d_last(d.size(), 0.0);
    std::vector<float> dl(static_cast<size_t>(B) * C);
    for (int s = 0; s < B; ++s) {
      const int r = c.cu[s + 1] - 1;
      ro_last.insert(ro_last.end(), ro.begin() + static_cast<size_t>(r) * C, ro.begin() + static_cast<size_t>(r + 1) * C);
      for (int e = 0; e < C; ++e)
        d_last[static_cast<size_t>(r) * C + e] = d[static_cast<size_t>(r) * C + e], dl[static_cast<size_t>(s) * C + e] = c.dout[static_cast<size_t>(r) * C + e];
    }
    const ref::Vec rg_last = ref::attention_masked_backward(q, d_last, N, NH, NKV, HS, vis);
    std::vector<float> lo(static_cast<size_t>(B) * C, nan), ll(static_cast<size_t>(B) * NH, nan),
        dql(static_cast<size_t>(N) * W, nan);
    cpu::attention_last_forward(lo.data(), ll.data(), c.qkv.data(), c.cu.data(), B, NH, NKV, HS, pk.prefix_of.data());
    cpu::attention_last_backward(dql.data(), dl.data(), c.qkv.data(), lo.data(), ll.data(), c.cu.data(), B, NH, NKV, HS,
                                 pk.prefix_of.data());
    EXPECT_TRUE(all_close(lo, ro_last, 2e-5, 1e-4)) << "last-query forward, packing " << k;
    EXPECT_TRUE(all_close(dql, rg_last, 2e-5 * max_abs(rg_last), 1e-3)) << "last-query backward, packing " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Rungs, PrefixLadder,
                         ::testing::Combine(::testing::Values(AttnImpl::Naive, AttnImpl::Gemm, AttnImpl::Flash),
                                            ::testing::Values(32, 64),
                                            ::testing::Values(std::pair{2, 2}, std::pair{4, 2}, std::pair{3, 1})),
                         [](const auto& info) {
                           const auto heads = std::get<2>(info.param);
                           return std::string(cpu::attn_impl_name(std::get<0>(info.param))) + "_d" +
                                  std::to_string(std::get<1>(info.param)) + "_h" + std::to_string(heads.first) + "kv" +
                                  std::to_string(heads.second);
                         });

TEST(PrefixAttention, AMalformedPackingIsRefused) {
  test::AttnCase c = test::make_attn_case({3, 2, 2}, 2, 2, 8, 1.0f, 3);
  std::vector<float> out(c.N() * c.C()), lse(c.N() * 2);
  const std::vector<int32_t> bad = {-1, 0, 1};  // continues a segment that itself continues one
  EXPECT_THROW(cpu::attention_forward(AttnImpl::Flash, out.data(), lse.data(), c.qkv.data(), c.cu.data(), 3, 2, 2, 8,
                                      true, bad.data()),
               std::invalid_argument);
}

// ---- the whole model ----

ModelConfig small_config(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 53, c.max_seq_len = 400, c.d_model = 32, c.n_layers = 3, c.n_heads = 4, c.d_ff = 48;
  if (arch == "llama") c.n_kv_heads = 2, c.rope_theta = 500.0f;
  c.n_heads_out = 2;
  c.head_names = {"a", "b"};
  c.head_weights = {0.7f, 0.3f};
  return c;
}

// Random pairs whose two sequences share `prefix` tokens, then differ (rest lengths given).
std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> make_pairs(int V, uint64_t seed) {
  Rng r(seed);
  auto seq = [&](int n) {
    std::vector<int32_t> s(n);
    for (auto& t : s) t = static_cast<int32_t>(r.below(V));
    return s;
  };
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> pairs;
  auto add = [&](int prefix, int a, int b) {
    auto p = seq(prefix), x = p, y = p;
    auto ra = seq(a), rb = seq(b);
    if (a > 0 && b > 0) rb[0] = (ra[0] + 1) % V;  // the rests really differ at their first token
    x.insert(x.end(), ra.begin(), ra.end());
    y.insert(y.end(), rb.begin(), rb.end());
    pairs.emplace_back(x, y);
  };
  add(0, 7, 4);     // nothing shared
  add(1, 6, 9);     // one token
  add(12, 1, 1);    // all but one: branches of one token
  add(5, 0, 3);     // the chosen sequence is a prefix of the rejected one (capped: both keep a token)
  add(150, 20, 2);  // a long prompt
  add(8, 8, 8);     // identical lengths
  pairs.emplace_back(pairs[1].first, pairs[1].first);  // identical sequences
  return pairs;
}

TokenBatch pack(const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& pairs, bool share,
                int* shared_tokens = nullptr) {
  TokenBatch b;
  b.clear();
  int saved = 0;
  for (const auto& [x, y] : pairs) saved += b.add_shared({&x, &y}, share);
  if (shared_tokens) *shared_tokens = saved;
  return b;
}

class PrefixModel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(PrefixModel, RewardsLossAndEveryGradientEqualTheUnsharedBatch) {
  const auto [arch, frozen] = GetParam();
  const ModelConfig cfg = small_config(arch);
  auto be = make_backend("cpu", 2);
  Model m(cfg, *be);
  const auto params = test::random_params(m.table(), 7);
  m.set_params(params.data());
  m.set_frozen_layers(frozen);
  const auto pairs = make_pairs(cfg.vocab_size, 9);
  std::vector<PairTarget> targets;
  for (size_t i = 0; i < pairs.size(); ++i) {
    PairTarget t;
    t.chosen = 2 * static_cast<int32_t>(i), t.rejected = t.chosen + 1;
    t.label = i % 3 == 0 ? 0.8f : 1.0f, t.head = static_cast<int32_t>(i % 3) - 1, t.weight = 1.0f + 0.1f * i;
    targets.push_back(t);
  }
  BTObjective obj(m, 0.01f);
  std::vector<float> r_plain, r_shared, g_plain(m.num_params()), g_shared(m.num_params());
  int saved = 0;
  const TokenBatch plain = pack(pairs, false), shared = pack(pairs, true, &saved);
  EXPECT_FALSE(plain.has_prefixes());
  EXPECT_TRUE(shared.has_prefixes());
  EXPECT_EQ(saved, 0 + 1 + 12 + 4 + 150 + 8 + 6);  // LCPs, each capped at the shorter length − 1
  EXPECT_EQ(shared.n_tokens(), plain.n_tokens() - saved);
  EXPECT_EQ(shared.n_seqs(), plain.n_seqs());

  m.zero_grads();
  const LossStats lp = obj.forward_backward(plain, targets, &r_plain);
  m.get_grads(g_plain.data());
  m.zero_grads();
  const LossStats ls = obj.forward_backward(shared, targets, &r_shared);
  m.get_grads(g_shared.data());

  ASSERT_EQ(r_plain.size(), r_shared.size());
  EXPECT_TRUE(all_close(r_shared, test::to_double(r_plain), 2e-5, 2e-5)) << "rewards";
  EXPECT_NEAR(ls.loss, lp.loss, 1e-5 * std::max(1.0, std::fabs(lp.loss)));
  EXPECT_EQ(ls.n_correct, lp.n_correct);
  double gmax = 0;
  for (float g : g_plain) gmax = std::max(gmax, static_cast<double>(std::fabs(g)));
  ASSERT_GT(gmax, 0.0);
  EXPECT_TRUE(all_close(g_shared, test::to_double(g_plain), 1e-4 * gmax, 1e-3)) << "gradients (max " << gmax << ")";
  // and the frozen part really got nothing
  for (const auto& info : m.table().tensors()) {
    if (m.trainable(info)) continue;
    for (size_t i = 0; i < info.numel; ++i) ASSERT_EQ(g_shared[info.offset + i], 0.0f) << info.name;
  }

  // inference forward agrees with the training one
  std::vector<float> r_inf;
  m.forward(shared, r_inf, false);
  EXPECT_TRUE(all_close(r_inf, test::to_double(r_shared), 1e-6, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(Families, PrefixModel,
                         ::testing::Combine(::testing::Values("gpt2", "llama"), ::testing::Values(0, 2)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_frozen" + std::to_string(std::get<1>(info.param));
                         });

TEST(PrefixModel, TheSharedBatchKeepsEveryTokenAndPosition) {
  const std::vector<int32_t> a = {1, 5, 6, 7, 2}, b = {1, 5, 6, 9, 9, 2};
  TokenBatch t;
  t.clear();
  EXPECT_EQ(t.add_shared({&a, &b}), 3);
  EXPECT_EQ(t.tokens, (std::vector<int32_t>{1, 5, 6, 7, 2, 9, 9, 2}));
  EXPECT_EQ(t.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 3, 4, 5}));
  EXPECT_EQ(t.cu_seqlens, (std::vector<int32_t>{0, 3, 5, 8}));
  EXPECT_EQ(t.prefix_of, (std::vector<int32_t>{-1, 0, 0}));
  EXPECT_EQ(t.outputs, (std::vector<int32_t>{1, 2}));
  // nothing in common at the first token: two plain sequences
  const std::vector<int32_t> c = {4, 5}, d = {3, 5};
  EXPECT_EQ(t.add_shared({&c, &d}), 0);
  EXPECT_EQ(t.outputs, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(t.prefix_of, (std::vector<int32_t>{-1, 0, 0, -1, -1}));
}

// Implicit transcripts: two texts that agree up to "…Assistant: Thank" but continue "s!" and " you",
// so the shared TEXT ends inside a token. The prefix is found on token ids, each side keeps exactly
// its own tokenization, and the rewards are those of the two texts scored apart.
TEST(PrefixModel, TranscriptsThatTokenizeDifferentlyAtTheBoundaryShareOnlyCommonTokens) {
  test::TempDir d;
  std::string corpus;
  for (int i = 0; i < 200; ++i)
    corpus += nlohmann::json({{"chosen", "Human: can you help me with item " + std::to_string(i) +
                                             "?\n\nAssistant: Thanks! Thanks! Thanks! Thank you for asking, sure."},
                              {"rejected", "Assistant: no. Thanks thanks Thanks Thank you"}}).dump() + "\n";
  train_tokenizer({d.write("c.jsonl", corpus)}, d.file("t.model"), 400, "bpe");
  auto tok = load_sentencepiece(d.file("t.model"));
  const std::string head = "\n\nHuman: can you help me with item 7?\n\nAssistant: Thank";
  const std::string a = head + "s! Happy to.", b = head + " you for asking.";
  bool cut = false;
  const auto ia = tok->encode_for_model(a, 400, &cut), ib = tok->encode_for_model(b, 400, &cut);
  const auto ihead = tok->encode(head);
  const int p = TokenBatch::shared_prefix({&ia, &ib});
  ASSERT_EQ(tok->encode("Thanks").size(), 1u);  // "Thanks" is one token, so a's boundary token is not the head's
  ASSERT_GT(p, 5);
  // BOS + the head's tokens but its last: the boundary token ("Thank…") is not shared, though the text is
  ASSERT_LE(p, static_cast<int>(ihead.size()));
  EXPECT_NE(ia[p], ib[p]);

  ModelConfig cfg = small_config("llama");
  cfg.vocab_size = tok->vocab_size();
  auto be = make_backend("cpu", 1);
  Model m(cfg, *be);
  const auto params = test::random_params(m.table(), 3);
  m.set_params(params.data());
  TokenBatch apart, shared;
  apart.clear(), shared.clear();
  apart.add(ia), apart.add(ib);
  EXPECT_EQ(shared.add_shared({&ia, &ib}), p);
  std::vector<int32_t> back(shared.tokens.begin(), shared.tokens.begin() + shared.cu_seqlens[2]);
  EXPECT_EQ(back, ia);  // prefix + the chosen rest is exactly the chosen text's tokens
  std::vector<float> ra, rs;
  m.forward(apart, ra, false);
  m.forward(shared, rs, false);
  EXPECT_TRUE(all_close(rs, test::to_double(ra), 2e-5, 2e-5));
}

}  // namespace
}  // namespace cairn
