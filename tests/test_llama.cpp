// The llama architecture family: each new op's forward and backward against central finite
// differences of the independent double reference (tests/reference) — RMSNorm (with a +100 offset),
// SwiGLU, rotary embeddings (and that the backward is the inverse rotation) — then the whole model
// with grouped-query attention: forward vs the reference, every parameter's gradient vs central
// differences, += accumulation, and frozen lower blocks (no gradient, no update, the rest unchanged).
// Tolerances as tests/test_ops.cpp: fp32 analytic vs double numeric, |err| ≤ 2e-5 + 2e-3·|ref|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cairn/backend.h"
#include "cairn/checkpoint.h"
#include "cairn/io.h"
#include "cairn/model.h"
#include "cairn/optim.h"
#include "cpu/ops.h"
#include "reference/model_ref.h"
#include "model_helpers.h"
#include "test_tmpdir.h"
#include "test_util.h"

namespace cairn {
using test::all_close;
using test::expect_parameter_gradients_match_fd;
using test::make_batch;
using test::rand_vec;
using test::random_params;
using test::random_seqs;
using test::to_double;

namespace {
constexpr double kAtol = 2e-5, kRtol = 2e-3;
double dot(const ref::Vec& a, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * r[i];
  return s;
}
std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}
}  // namespace

class RmsNormTest : public ::testing::TestWithParam<float> {};  // param: offset added to the inputs

TEST_P(RmsNormTest, ForwardAndBackward) {
  const int N = 7, C = 13;
  const float eps = 1e-5f;
  auto x = rand_vec(N * C, 31);
  for (auto& v : x) v += GetParam();
  auto w = rand_vec(C, 32, 0.5f, 1.5f), R = rand_vec(N * C, 33);
  std::vector<float> y(N * C), rstd(N);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps);
  auto xd = to_double(x), wd = to_double(w);
  EXPECT_TRUE(all_close(y, ref::rmsnorm(xd, wd.data(), N, C, eps), 1e-5, 1e-5));
  auto dx0 = rand_vec(N * C, 34), dw0 = rand_vec(C, 35);  // both accumulate
  std::vector<float> dx = dx0, dw = dw0;
  cpu::rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  const double h = GetParam() > 10 ? 1e-4 : 1e-6;
  auto num_x = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::rmsnorm(v, wd.data(), N, C, eps), R); }, xd, h);
  auto num_w = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::rmsnorm(xd, v.data(), N, C, eps), R); }, wd, h);
  EXPECT_TRUE(all_close(minus(dx, dx0), num_x, kAtol, kRtol));
  EXPECT_TRUE(all_close(minus(dw, dw0), num_w, kAtol, kRtol));
}
INSTANTIATE_TEST_SUITE_P(Offsets, RmsNormTest, ::testing::Values(0.0f, 100.0f));

TEST(LlamaOps, SwiGluForwardAndBackward) {
  for (auto [N, F] : {std::pair{1, 1}, std::pair{5, 7}, std::pair{9, 33}}) {
    auto x = rand_vec(N * 2 * F, 41, -4.0f, 4.0f), R = rand_vec(N * F, 42);
    std::vector<float> y(N * F), dx(N * 2 * F, std::nanf(""));
    cpu::swiglu_forward(y.data(), x.data(), N, F);
    EXPECT_TRUE(all_close(y, ref::swiglu(to_double(x), N, F), 1e-5, 1e-5));
    cpu::swiglu_backward(dx.data(), x.data(), R.data(), N, F);
    auto num = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::swiglu(v, N, F), R); }, to_double(x));
    EXPECT_TRUE(all_close(dx, num, kAtol, kRtol)) << "N " << N << " F " << F;
  }
}

TEST(LlamaOps, RopeMatchesReferenceAndBackwardIsTheInverseRotation) {
  for (auto [NH, NKV, HS] : {std::tuple{2, 2, 4}, std::tuple{4, 2, 8}, std::tuple{3, 1, 6}}) {
    const int T = 9, W = (NH + 2 * NKV) * HS;
    const float theta = 10000.0f;
    auto x = rand_vec(T * W, 51);
    std::vector<int32_t> pos(T);
    for (int t = 0; t < T; ++t) pos[t] = t;
    std::vector<float> y = x;
    cpu::rope_forward(y.data(), pos.data(), T, NH, NKV, HS, theta);
    EXPECT_TRUE(all_close(y, ref::rope(to_double(x), T, NH, NKV, HS, theta), 1e-6, 1e-5));
    // backward of L = Σ R ⊙ rope(x) is rope_backward(R), against finite differences
    auto R = rand_vec(T * W, 52);
    std::vector<float> g = R;
    cpu::rope_backward(g.data(), pos.data(), T, NH, NKV, HS, theta);
    auto num = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::rope(v, T, NH, NKV, HS, theta), R); }, to_double(x));
    EXPECT_TRUE(all_close(g, num, kAtol, kRtol));
    // and rotating back recovers the input
    cpu::rope_backward(y.data(), pos.data(), T, NH, NKV, HS, theta);
    EXPECT_TRUE(all_close(y, x, 1e-6, 1e-5));
  }
  // large positions (SmolLM2's context is 8192): still a rotation (norm of each pair preserved)
  const int NH = 1, NKV = 1, HS = 64, W = 3 * HS;
  auto x = rand_vec(W, 53);
  std::vector<int32_t> pos = {8191};
  std::vector<float> y = x;
  cpu::rope_forward(y.data(), pos.data(), 1, NH, NKV, HS, 100000.0f);
  for (int i = 0; i < HS / 2; ++i)
    EXPECT_NEAR(std::hypot(y[i], y[i + HS / 2]), std::hypot(x[i], x[i + HS / 2]), 1e-5);
}

namespace {
ModelConfig llama_test_config(int n_kv_heads) {
  ModelConfig c;
  c.arch = "llama";
  c.vocab_size = 13, c.max_seq_len = 16, c.d_model = 16, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = n_kv_heads;
  c.d_ff = 10, c.rope_theta = 500.0f, c.norm_eps = 1e-5f;
  c.n_heads_out = 2, c.head_names = {"a", "b"}, c.head_weights = {0.5f, 0.5f};
  return c;
}
}  // namespace

TEST(Llama, TableHasNoBiasesNoPositionsAndGroupedQkv) {
  ModelConfig cfg = llama_test_config(2);
  ParamTable t(cfg);
  EXPECT_EQ(t.pos_emb, kNoParam);
  EXPECT_EQ(t.head_b, kNoParam);
  for (const auto& p : t.tensors()) EXPECT_EQ(p.name.find("bias"), std::string::npos) << p.name;
  EXPECT_EQ(t.find("blocks.0.attn.qkv.weight")->shape, (std::vector<int64_t>{(4 + 2 * 2) * 4, 16}));
  EXPECT_EQ(t.find("blocks.1.mlp.fc.weight")->shape, (std::vector<int64_t>{20, 16}));
  EXPECT_EQ(t.find("blocks.1.attn.proj.weight")->shape, (std::vector<int64_t>{16, 16}));
}

class LlamaModel : public ::testing::TestWithParam<int> {};  // param: key/value heads (4: MHA; 2, 1: GQA)

TEST_P(LlamaModel, ForwardMatchesReference) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = llama_test_config(GetParam());
  Model m(cfg, *be);
  auto p = random_params(m.table(), 61);
  m.set_params(p.data());
  auto seqs = random_seqs({3, 16, 7, 1}, cfg.vocab_size, 62);
  std::vector<float> r;
  m.forward(make_batch(seqs), r, false);
  EXPECT_TRUE(all_close(r, ref::model_rewards(cfg, m.table(), to_double(p), seqs), 1e-5, 1e-4));
}

TEST_P(LlamaModel, EveryParameterGradientMatchesFiniteDifferences) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = llama_test_config(GetParam());
  Model m(cfg, *be);
  auto p = random_params(m.table(), 63);
  m.set_params(p.data());
  auto seqs = random_seqs({3, 11, 6}, cfg.vocab_size, 64);
  auto R = rand_vec(seqs.size() * cfg.n_heads_out, 65);
  std::vector<float> g = expect_parameter_gradients_match_fd(m, cfg, p, seqs, R);
  std::vector<float> r;
  // backward again accumulates: twice the gradient
  m.forward(make_batch(seqs), r, true);
  m.backward(R);
  std::vector<float> g2(m.num_params());
  m.get_grads(g2.data());
  for (auto& x : g) x *= 2.0f;
  EXPECT_TRUE(all_close(g2, g, 1e-6, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(KvHeads, LlamaModel, ::testing::Values(4, 2, 1));

// Frozen lower blocks: their parameters (and the embeddings) get no gradient and no update; the
// trainable ones get exactly the gradient of the unfrozen model; rewards are unchanged.
TEST(Llama, FrozenLowerBlocksGetNoGradientAndNoUpdate) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = llama_test_config(2);
  cfg.n_layers = 3;
  Model full(cfg, *be), part(cfg, *be);
  auto p = random_params(full.table(), 71);
  full.set_params(p.data()), part.set_params(p.data());
  part.set_frozen_layers(2);
  auto batch = make_batch(random_seqs({5, 9, 14}, cfg.vocab_size, 72));
  auto R = rand_vec(3 * cfg.n_heads_out, 73);
  std::vector<float> r1, r2, g1(full.num_params()), g2(full.num_params());
  full.zero_grads(), part.zero_grads();
  full.forward(batch, r1, true), part.forward(batch, r2, true);
  EXPECT_EQ(r1, r2);
  full.backward(R), part.backward(R);
  full.get_grads(g1.data()), part.get_grads(g2.data());
  for (const auto& t : full.table().tensors()) {
    std::vector<float> a(g1.begin() + t.offset, g1.begin() + t.offset + t.numel);
    std::vector<float> b(g2.begin() + t.offset, g2.begin() + t.offset + t.numel);
    if (part.trainable(t)) {
      EXPECT_EQ(a, b) << t.name;
    } else {
      EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](float x) { return x == 0.0f; })) << t.name;
    }
    EXPECT_EQ(part.trainable(t), t.layer >= 2) << t.name;
  }
  OptimConfig oc;
  oc.warmup = 1, oc.total_steps = 4, oc.weight_decay = 0.1f;
  AdamW opt(part, oc);
  opt.step();
  std::vector<float> after(part.num_params());
  part.get_params(after.data());
  for (const auto& t : part.table().tensors()) {
    if (part.trainable(t)) continue;
    for (size_t i = 0; i < t.numel; ++i) ASSERT_EQ(after[t.offset + i], p[t.offset + i]) << t.name;
  }
  // all blocks frozen: only the final norm and the head train
  part.set_frozen_layers(3);
  part.zero_grads();
  part.forward(batch, r2, true);
  part.backward(R);
  part.get_grads(g2.data());
  for (const auto& t : part.table().tensors()) {
    if (t.layer >= 3) continue;
    for (size_t i = 0; i < t.numel; ++i) ASSERT_EQ(g2[t.offset + i], 0.0f) << t.name;
  }
}

// The optimizer keeps moments for the trainable parameters only (8 bytes per frozen parameter
// saved), and its steps are those of an optimizer over the whole buffer: the trainable parameters'
// updates and moments are bit-identical; a checkpoint writes the frozen tensors' moments as 0 and
// restores the trainable ones exactly.
TEST(Llama, FrozenParametersHaveNoOptimizerMoments) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = llama_test_config(2);
  cfg.n_layers = 3;
  Model full(cfg, *be), part(cfg, *be);
  const auto p = random_params(full.table(), 81);
  full.set_params(p.data()), part.set_params(p.data());
  part.set_frozen_layers(2);
  size_t trainable = 0;
  for (const auto& t : part.table().tensors()) trainable += part.trainable(t) ? t.numel : 0;
  OptimConfig oc;
  oc.warmup = 1, oc.total_steps = 6, oc.weight_decay = 0.1f;
  AdamW opt_full(full, oc), opt_part(part, oc);
  EXPECT_EQ(opt_full.moments_size(), full.num_params());
  EXPECT_EQ(opt_part.moments_size(), trainable);
  EXPECT_EQ(opt_part.moments_begin(), part.num_params() - trainable);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g = rand_vec(full.num_params(), 82 + step);
    for (const auto& t : part.table().tensors())  // what backward leaves in a frozen model
      if (!part.trainable(t)) std::fill(g.begin() + t.offset, g.begin() + t.offset + t.numel, 0.0f);
    be->to_device(full.grads(), g.data(), g.size() * sizeof(float));
    be->to_device(part.grads(), g.data(), g.size() * sizeof(float));
    EXPECT_EQ(opt_full.step(), opt_part.step());
  }
  std::vector<float> wf(full.num_params()), wp(part.num_params());
  full.get_params(wf.data()), part.get_params(wp.data());
  const size_t k = opt_part.moments_begin();
  for (const auto& t : part.table().tensors()) {
    for (size_t i = 0; i < t.numel; ++i) {
      const size_t j = t.offset + i;
      if (!part.trainable(t)) {
        ASSERT_EQ(wp[j], p[j]) << t.name;
        continue;
      }
      ASSERT_EQ(wp[j], wf[j]) << t.name;
      ASSERT_EQ(opt_part.m()[j - k], opt_full.m()[j]) << t.name;
      ASSERT_EQ(opt_part.v()[j - k], opt_full.v()[j]) << t.name;
    }
  }
  test::TempDir d;
  save_checkpoint(d.file(""), part, opt_part, {{"step", 3}});
  const auto saved = safetensors_parse(read_file(d.file("optimizer.safetensors")), "optimizer.safetensors");
  for (const auto& t : part.table().tensors()) {
    const auto& m = saved.at("exp_avg." + t.name).data;
    const auto& v = saved.at("exp_avg_sq." + t.name).data;
    if (part.trainable(t)) {
      EXPECT_TRUE(std::equal(m.begin(), m.end(), opt_part.m() + (t.offset - k))) << t.name;
      EXPECT_TRUE(std::equal(v.begin(), v.end(), opt_part.v() + (t.offset - k))) << t.name;
    } else {
      EXPECT_TRUE(std::all_of(m.begin(), m.end(), [](float x) { return x == 0.0f; })) << t.name;
      EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; })) << t.name;
    }
  }
  // the checkpoint resumed into a model with `frozen` blocks frozen
  auto resumed = [&](int frozen) {
    auto m = std::make_unique<Model>(cfg, *be);
    m->set_frozen_layers(frozen);
    auto o = std::make_unique<AdamW>(*m, oc);
    load_checkpoint(d.file(""), *m, *o);
    return std::make_pair(std::move(m), std::move(o));
  };
  const auto again = resumed(2);
  EXPECT_TRUE(std::equal(opt_part.m(), opt_part.m() + trainable, again.second->m()));
  EXPECT_TRUE(std::equal(opt_part.v(), opt_part.v() + trainable, again.second->v()));
  EXPECT_EQ(again.second->steps_done(), 3);
  // resumed with fewer frozen blocks: the newly trainable block 1 starts from zero moments, block 2
  // and the head keep theirs (offsets of save and load differ); with more, block 2's are dropped
  const auto fewer = resumed(1);
  const AdamW& of = *fewer.second;
  const size_t k1 = of.moments_begin();
  ASSERT_LT(k1, k);
  EXPECT_TRUE(std::all_of(of.m(), of.m() + (k - k1), [](float x) { return x == 0.0f; }));
  EXPECT_TRUE(std::equal(opt_part.m(), opt_part.m() + trainable, of.m() + (k - k1)));
  EXPECT_TRUE(std::equal(opt_part.v(), opt_part.v() + trainable, of.v() + (k - k1)));
  const auto more = resumed(3);
  const AdamW& om = *more.second;
  ASSERT_GT(om.moments_begin(), k);
  EXPECT_TRUE(std::equal(om.m(), om.m() + om.moments_size(), opt_part.m() + (om.moments_begin() - k)));
  // freezing more after the optimizer was made is a programming error, not a silent mis-step
  part.set_frozen_layers(3);
  EXPECT_THROW(opt_part.step(), std::logic_error);
}

}  // namespace cairn
