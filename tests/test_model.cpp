// Whole-model tests: forward vs the double reference, every parameter's gradient vs central finite
// differences of the reference (double), += semantics, determinism, and learnability of a synthetic
// preference task.
#include <gtest/gtest.h>

#include <cstring>

#include "cairn/backend.h"
#include "cairn/model.h"
#include "cairn/objective.h"
#include "reference/model_ref.h"
#include "model_helpers.h"
#include "test_util.h"
#include "synthetic_task.h"

namespace cairn {
using test::all_close;
using test::expect_parameter_gradients_match_fd;
using test::make_batch;
using test::rand_vec;
using test::random_params;
using test::random_seqs;

namespace {
ModelConfig tiny_test_config(int n_heads_out = 2) {
  ModelConfig c;
  c.vocab_size = 11, c.max_seq_len = 12, c.d_model = 8, c.n_layers = 2, c.n_heads = 2, c.d_ff = 12;
  c.n_heads_out = n_heads_out;
  c.head_names.clear();
  for (int h = 0; h < n_heads_out; ++h) c.head_names.push_back("h" + std::to_string(h));
  c.head_weights.assign(n_heads_out, 1.0f / n_heads_out);
  return c;
}

}  // namespace

TEST(Model, ForwardMatchesReference) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = tiny_test_config();
  Model m(cfg, *be);
  auto p = random_params(m.table(), 1);
  m.set_params(p.data());
  auto seqs = random_seqs({3, 12, 7, 1}, cfg.vocab_size, 2);
  std::vector<float> r;
  m.forward(make_batch(seqs), r, false);
  auto ref = ref::model_rewards(cfg, m.table(), test::to_double(p), seqs);
  EXPECT_TRUE(all_close(r, ref, 1e-5, 1e-4));
}

TEST(Model, EveryParameterGradientMatchesFiniteDifferences) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = tiny_test_config();
  Model m(cfg, *be);
  auto p = random_params(m.table(), 3);
  m.set_params(p.data());
  auto seqs = random_seqs({3, 12, 7}, cfg.vocab_size, 4);
  auto R = rand_vec(seqs.size() * cfg.n_heads_out, 5);  // L = Σ R ⊙ rewards
  expect_parameter_gradients_match_fd(m, cfg, p, seqs, R);
}

TEST(Model, BackwardTwiceDoublesParameterGradients) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = tiny_test_config();
  Model m(cfg, *be);
  auto p = random_params(m.table(), 6);
  m.set_params(p.data());
  auto batch = make_batch(random_seqs({5, 9}, cfg.vocab_size, 7));
  auto R = rand_vec(2 * cfg.n_heads_out, 8);
  std::vector<float> r, g1(m.num_params()), g2(m.num_params());
  m.zero_grads();
  m.forward(batch, r, true);
  m.backward(R);
  m.get_grads(g1.data());
  m.forward(batch, r, true);
  m.backward(R);
  m.get_grads(g2.data());
  for (auto& x : g1) x *= 2.0f;
  EXPECT_TRUE(all_close(g2, g1, 1e-6, 1e-5));
}

static std::vector<float> train_synthetic(int steps, int threads, uint64_t seed, double* heldout_acc) {
  auto be = make_backend("cpu", threads);
  return test::train_synthetic(*be, steps, seed, heldout_acc);
}

TEST(Model, SameSeedAndThreadsGiveBitIdenticalWeights) {
  auto a = train_synthetic(20, 2, 42, nullptr);
  auto b = train_synthetic(20, 2, 42, nullptr);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  auto c = train_synthetic(20, 2, 43, nullptr);
  EXPECT_NE(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

TEST(Model, LearnsSyntheticPreferenceTask) {
  double acc = 0;
  train_synthetic(400, 2, 7, &acc);
  EXPECT_GE(acc, 0.95) << "held-out accuracy " << acc;
}

}  // namespace cairn

namespace cairn {

// The full training objective with a reward head per principle plus a length head: BT on the
// training composite (quality + length) with soft labels, margins, weights and centering, plus the
// length decorrelation penalty λ·(ρ(q, len)² + 1 − ρ(length head, len)) — all parameters' gradients
// against central differences of the same objective evaluated with the double reference model.
TEST(Model, LengthDebiasedObjectiveGradientMatchesFiniteDifferences) {
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = tiny_test_config(3);
  cfg.head_names = {"helpful", "harmless", "length"};
  cfg.head_weights = {0.6f, 0.4f, 0.0f};
  Model m(cfg, *be);
  auto p = random_params(m.table(), 21);
  m.set_params(p.data());
  auto seqs = random_seqs({4, 9, 6, 12, 3, 7}, cfg.vocab_size, 22);
  std::vector<PairTarget> pairs = {{0, 1, 0.9f, 0.1f, 1.0f, -1}, {2, 3, 1.0f, 0.0f, 2.0f, 0}, {4, 5, 0.3f, -0.2f, 0.5f, 1}};
  std::vector<float> lengths = {40, 310, 120, 95, 15, 220};
  const float center = 0.05f, lambda = 0.7f;
  BTObjective obj(m, center);
  obj.set_length_lambda(lambda);
  m.zero_grads();
  obj.forward_backward(make_batch(seqs), pairs, nullptr, &lengths);
  std::vector<float> g(m.num_params());
  m.get_grads(g.data());

  const std::vector<double> train_w = {0.6, 0.4, 1.0};
  auto objective = [&](const ref::Vec& v) {
    auto r = ref::model_rewards(cfg, m.table(), v, seqs);
    const int H = 3;
    auto rew = [&](int b, int head) {
      if (head >= 0) return r[b * H + head];
      double s = 0;
      for (int h = 0; h < H; ++h) s += train_w[h] * r[b * H + h];
      return s;
    };
    double num = 0, den = 0, c2 = 0;
    for (const auto& q : pairs) {
      const double d = rew(q.chosen, q.head) - rew(q.rejected, q.head) - q.margin;
      num += q.weight * (q.label * std::log1p(std::exp(-d)) + (1 - q.label) * std::log1p(std::exp(d)));
      den += q.weight;
      const double s = rew(q.chosen, q.head) + rew(q.rejected, q.head);
      c2 += s * s;
    }
    auto rho = [&](const std::vector<double>& a) {
      const size_t n = a.size();
      double ma = 0, ml = 0, saa = 0, sll = 0, sal = 0;
      for (size_t i = 0; i < n; ++i) ma += a[i] / n, ml += lengths[i] / n;
      for (size_t i = 0; i < n; ++i)
        saa += (a[i] - ma) * (a[i] - ma), sll += (lengths[i] - ml) * (lengths[i] - ml), sal += (a[i] - ma) * (lengths[i] - ml);
      return sal / std::sqrt(saa * sll);
    };
    std::vector<double> q(6), l(6);
    for (int b = 0; b < 6; ++b) q[b] = 0.6 * r[b * H] + 0.4 * r[b * H + 1], l[b] = r[b * H + 2];
    const double rq = rho(q), rl = rho(l);
    return num / den + center * c2 / pairs.size() + lambda * (rq * rq + 1 - rl);
  };
  auto num = ref::fd_grad(objective, test::to_double(p), 1e-5);
  for (const auto& t : m.table().tensors()) {
    std::vector<float> ga(g.begin() + t.offset, g.begin() + t.offset + t.numel);
    std::vector<double> gn(num.begin() + t.offset, num.begin() + t.offset + t.numel);
    EXPECT_TRUE(all_close(ga, gn, 5e-5, 3e-3)) << t.name;
  }
}

}  // namespace cairn
