// The training machinery outside the model: the learning-rate schedule against an independent
// formula, the epoch order (a seeded permutation, length-bucketed batches), metrics.jsonl truncation
// on resume, the two head-weight sets of the composite reward, the optimizer's refusal of non-finite
// gradients, per-region CPU thread counts, and the Trainer loop itself.
#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

#include "cairn/backend.h"
#include "cairn/buffer.h"
#include "cairn/errors.h"
#include "cairn/objective.h"
#include "cairn/optim.h"
#include "cairn/reward.h"
#include "test_tmpdir.h"
#include "test_util.h"
#include "train/batching.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace cairn {
using test::TempDir;

// ---- learning-rate schedule ----

// Linear warm-up to lr over `warmup` steps, then a half cosine from lr down to lr·min_ratio at
// total_steps, flat after; written from the definition in double.
double reference_lr(double lr, double min_ratio, int warmup, int total, int step) {
  if (warmup > 0 && step <= warmup) return lr * step / warmup;
  const double t = std::clamp(static_cast<double>(step - warmup) / std::max(1, total - warmup), 0.0, 1.0);
  const double lo = lr * min_ratio;
  return lo + (lr - lo) * (1 + std::cos(M_PI * t)) / 2;
}

TEST(Schedule, WarmupThenCosineToTheFloor) {
  for (auto [warmup, total] : std::vector<std::pair<int, int>>{{10, 100}, {0, 37}, {1, 2}, {50, 50}, {7, 1000}}) {
    OptimConfig c;
    c.lr = 3e-4f, c.min_lr_ratio = 0.1f, c.warmup = warmup, c.total_steps = total;
    for (int step = 1; step <= total + 5; ++step)
      EXPECT_NEAR(lr_at(c, step), reference_lr(c.lr, c.min_lr_ratio, warmup, total, step), 1e-6 * c.lr)
          << "warmup " << warmup << " total " << total << " step " << step;
    if (warmup > 0) {
      EXPECT_FLOAT_EQ(lr_at(c, warmup), c.lr);
    }
    if (total > warmup) {
      EXPECT_NEAR(lr_at(c, total), c.lr * c.min_lr_ratio, 1e-6 * c.lr);
    }
    for (int step = std::max(1, warmup) + 1; step <= total; ++step) EXPECT_LE(lr_at(c, step), lr_at(c, step - 1));
  }
}

// ---- epoch order ----

std::vector<TokenizedPair> pairs_of_lengths(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<TokenizedPair> p(n);
  for (auto& x : p) {
    x.chosen.assign(2 + r.below(60), 5);
    x.rejected.assign(2 + r.below(60), 6);
  }
  return p;
}

TEST(EpochOrder, SeededPermutationWithLengthBucketedBatches) {
  const size_t n = 1003;
  const int B = 8, window = 5;
  const auto pairs = pairs_of_lengths(n, 3);
  auto len = [&](size_t i) { return std::max(pairs[i].chosen.size(), pairs[i].rejected.size()); };
  const auto o = epoch_order(n, pairs, 42, 0, B, window);
  std::vector<size_t> sorted = o;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i) << "not a permutation";

  EXPECT_EQ(o, epoch_order(n, pairs, 42, 0, B, window)) << "not deterministic in (seed, epoch)";
  EXPECT_NE(o, epoch_order(n, pairs, 42, 1, B, window)) << "epochs repeat";
  EXPECT_NE(o, epoch_order(n, pairs, 43, 0, B, window)) << "seeds repeat";

  // Within a window of `window` batches the pairs were sorted by length, then the batches shuffled:
  // the length ranges of two batches of one window never interleave.
  const size_t per_window = static_cast<size_t>(window) * B;
  bool any_descent = false;
  for (size_t w = 0; w < n; w += per_window) {
    std::vector<std::pair<size_t, size_t>> ranges;  // (min, max) length of each batch
    for (size_t b = w; b < std::min(n, w + per_window); b += B) {
      size_t lo = SIZE_MAX, hi = 0;
      for (size_t k = b; k < std::min({n, b + B, w + per_window}); ++k) lo = std::min(lo, len(o[k])), hi = std::max(hi, len(o[k]));
      ranges.push_back({lo, hi});
    }
    for (size_t i = 0; i < ranges.size(); ++i)
      for (size_t j = 0; j < ranges.size(); ++j)
        if (i != j && ranges[i].first < ranges[j].first) {
          EXPECT_LE(ranges[i].second, ranges[j].first) << "window " << w / per_window;
        }
    for (size_t i = 1; i < ranges.size(); ++i) any_descent |= ranges[i].first < ranges[i - 1].first;
  }
  EXPECT_TRUE(any_descent) << "batches of a window should not rise in length through the epoch";

  // batch size 1: a plain shuffle
  const auto plain = epoch_order(n, pairs, 42, 0, 1, window);
  EXPECT_TRUE(std::is_permutation(plain.begin(), plain.end(), o.begin()));
}

// ---- metrics.jsonl on resume ----

std::vector<long> logged_steps(const std::string& path) {
  std::ifstream in(path);
  std::vector<long> steps;
  for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line).at("step").get<long>());
  return steps;
}

TEST(MetricsLog, ResumeCutsBackToTheCheckpointAndDropsATornLine) {
  TempDir d;
  std::string log;
  for (int s = 5; s <= 50; s += 5) log += nlohmann::json{{"step", s}, {"loss", 0.5}}.dump() + "\n";
  log += "{\"step\": 55, \"lo";  // a run killed mid-line
  const std::string path = d.write("metrics.jsonl", log);
  {
    MetricsLog m(path, 30);  // the checkpoint was at step 30
    EXPECT_EQ(logged_steps(path), (std::vector<long>{5, 10, 15, 20, 25, 30}));
    m.write({{"step", 35}, {"loss", 0.4}});
  }
  EXPECT_EQ(logged_steps(path), (std::vector<long>{5, 10, 15, 20, 25, 30, 35}));
  {
    MetricsLog fresh(path, -1);  // a new run starts an empty log
  }
  EXPECT_TRUE(logged_steps(path).empty());
  {
    MetricsLog none(d.file("absent.jsonl"), 10);  // resuming without a log starts one
    none.write({{"step", 11}});
  }
  EXPECT_EQ(logged_steps(d.file("absent.jsonl")), (std::vector<long>{11}));
}

// ---- the composite reward's two weight sets ----

TEST(Reward, ScoringAndTrainingWeightSets) {
  ModelConfig c;
  c.n_heads_out = 3, c.head_names = {"helpful", "harmless", "length"}, c.head_weights = {0.6f, 0.4f, 0.0f};
  EXPECT_EQ(c.length_head(), 2);
  EXPECT_EQ(head_weights(c, HeadUse::Scoring), (std::vector<float>{0.6f, 0.4f, 0.0f}));
  EXPECT_EQ(head_weights(c, HeadUse::Training), (std::vector<float>{0.6f, 0.4f, 1.0f}));
  const std::vector<float> r = {0.5f, -2.0f, 7.0f, /* row 1 */ 1.0f, 3.0f, -1.0f};
  const auto w = head_weights(c, HeadUse::Scoring);
  EXPECT_DOUBLE_EQ(side_reward(r.data(), 1, -1, 3, w.data()), double(0.6f) * 1.0 + double(0.4f) * 3.0);
  EXPECT_DOUBLE_EQ(side_reward(r.data(), 0, 2, 3, w.data()), 7.0);  // a pair's own head
  // a head named "length" that carries scoring weight is an ordinary principle, not a length head
  c.head_weights = {0.5f, 0.3f, 0.2f};
  EXPECT_EQ(c.length_head(), -1);
  EXPECT_EQ(head_weights(c, HeadUse::Training), head_weights(c, HeadUse::Scoring));
}

// ---- optimizer ----

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 16, c.max_seq_len = 8, c.d_model = 8, c.n_layers = 1, c.n_heads = 2, c.d_ff = 16;
  return c;
}

TEST(AdamW, NonFiniteGradientNeverReachesWeightsOrMoments) {
  auto be = make_backend("cpu", 1);
  Model m(small_config(), *be);
  m.init(3);
  OptimConfig oc;
  oc.warmup = 1, oc.total_steps = 10;
  AdamW opt(m, oc);
  std::vector<float> before(m.num_params()), g = test::rand_vec(m.num_params(), 4);
  m.get_params(before.data());
  g[17] = std::nanf("");
  be->to_device(m.grads(), g.data(), g.size() * sizeof(float));
  EXPECT_FALSE(std::isfinite(opt.step()));
  std::vector<float> after(m.num_params()), mom(m.num_params());
  m.get_params(after.data());
  EXPECT_EQ(before, after);
  be->to_host(mom.data(), opt.m(), mom.size() * sizeof(float));
  EXPECT_TRUE(std::all_of(mom.begin(), mom.end(), [](float x) { return x == 0.0f; }));
  // a finite gradient afterwards trains as usual
  g[17] = 0.5f;
  be->to_device(m.grads(), g.data(), g.size() * sizeof(float));
  EXPECT_TRUE(std::isfinite(opt.step()));
  m.get_params(after.data());
  EXPECT_NE(before, after);
  for (float x : after) ASSERT_TRUE(std::isfinite(x));
}

// ---- threads ----

// A CPU backend's thread count applies to its own ops only: creating or using one leaves the
// process's OpenMP setting alone, so two backends (or a backend and the rest of the program) with
// different counts coexist.
TEST(CpuBackend, ThreadCountIsPerBackendNotProcessWide) {
  const int outer = omp_get_max_threads();
  omp_set_num_threads(3);
  {
    auto one = make_backend("cpu", 1);
    EXPECT_EQ(omp_get_max_threads(), 3);
    EXPECT_NE(one->name().find("1 threads"), std::string::npos) << one->name();
    auto two = make_backend("cpu", 2);
    std::vector<float> x = test::rand_vec(4096, 1), y = test::rand_vec(4096, 2);
    one->add_inplace(x.data(), y.data(), x.size());
    two->gelu_forward(x.data(), y.data(), x.size());
    EXPECT_EQ(omp_get_max_threads(), 3);
    EXPECT_NE(two->name().find("2 threads"), std::string::npos) << two->name();
  }
  omp_set_num_threads(outer);
}

TEST(DeviceArray, OwnsMovesAndGrows) {
  auto be = make_backend("cpu", 1);
  DeviceArray<float> a(*be, 100);
  ASSERT_FALSE(a.empty());
  be->fill(a.data(), 2.0f, 100);
  float* p = a.data();
  DeviceArray<float> b = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 100u);
  b.ensure(*be, 50);  // big enough: kept
  EXPECT_EQ(b.data(), p);
  b.ensure(*be, 500);
  EXPECT_EQ(b.size(), 500u);
  b.reset();
  EXPECT_TRUE(b.empty());
}

// ---- the Trainer loop ----

TEST(Trainer, RunsTheScheduleLogsAndCheckpoints) {
  TempDir d;
  auto be = make_backend("cpu", 2);
  ModelConfig cfg = small_config();
  Model m(cfg, *be);
  m.init(1);
  Rng r(5);
  std::vector<TokenizedPair> train(40), valid(12);
  for (auto* set : {&train, &valid})
    for (auto& p : *set) {
      p.chosen = {1, 7, static_cast<int32_t>(3 + r.below(12)), 2};
      p.rejected = {1, 8, static_cast<int32_t>(3 + r.below(12)), 2};
    }
  TrainSettings s;
  s.out_dir = d.file("run");
  std::filesystem::create_directories(s.out_dir);
  s.batch_pairs = 8, s.total_steps = 12, s.log_every = 5, s.eval_every = 6, s.save_every = 6, s.seed = 9;
  s.optim.lr = 1e-2f, s.optim.warmup = 1, s.optim.total_steps = 12;
  Trainer t(s, m, train, valid);
  std::atomic<bool> stop{false};
  ASSERT_EQ(t.run(stop), Trainer::Outcome::Done);
  EXPECT_EQ(t.progress().step, 12);
  EXPECT_EQ(t.progress().epoch, 2);  // 40 pairs / 8 = 5 steps an epoch
  EXPECT_EQ(t.progress().epoch_pos, 16);
  EXPECT_EQ(logged_steps(d.file("run/metrics.jsonl")), (std::vector<long>{5, 6, 10, 12}));
  std::ifstream in(d.file("run/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.contains("valid_acc"), j["step"] == 6 || j["step"] == 12) << line;
  }
  EXPECT_GT(t.progress().best_valid_acc, 0.9);  // the task: token 7 beats token 8

  // A stop requested before the first step of a resumed trainer: checkpoint at the same step.
  Model m2(cfg, *be);
  s.total_steps = 20, s.optim.total_steps = 20;
  Trainer t2(s, m2, train, valid);
  t2.resume();
  EXPECT_EQ(t2.progress().step, 12);
  std::vector<float> p1(m.num_params()), p2(m.num_params());
  m.get_params(p1.data()), m2.get_params(p2.data());
  EXPECT_EQ(p1, p2);
  stop = true;
  EXPECT_EQ(t2.run(stop), Trainer::Outcome::Interrupted);
  EXPECT_EQ(nlohmann::json::parse(test::slurp(d.file("run/trainer_state.json")))["saved_because"], "interrupted");
}

// A set interrupt flag stops a forward or backward at a block boundary with Interrupted, before any
// parameter changes; cleared, the same model trains on.
TEST(Trainer, InterruptStopsAPassWithoutTouchingParameters) {
  auto be = make_backend("cpu", 1);
  Model m(small_config(), *be);
  m.init(3);
  std::vector<TokenizedPair> pairs(4);
  for (auto& p : pairs) p.chosen = {1, 7, 5, 2}, p.rejected = {1, 8, 5, 2};
  std::vector<size_t> order = {0, 1, 2, 3};
  TokenBatch batch;
  std::vector<PairTarget> targets;
  build_batch(pairs, order, 0, 4, true, &batch, &targets);  // shared prefixes: the interrupt path holds for them too
  OptimConfig oc;
  oc.total_steps = 10;
  AdamW opt(m, oc);
  BTObjective obj(m, 0.0f);
  std::vector<float> before(m.num_params()), after(m.num_params());
  m.get_params(before.data());
  std::atomic<bool> flag{true};
  m.set_interrupt(&flag);
  EXPECT_THROW(obj.train_step(opt, batch, targets), Interrupted);
  std::vector<float> rewards;
  EXPECT_THROW(obj.evaluate(batch, targets, &rewards), Interrupted);
  m.get_params(after.data());
  EXPECT_EQ(before, after);
  EXPECT_EQ(opt.steps_done(), 0);
  flag = false;
  obj.train_step(opt, batch, targets);
  m.get_params(after.data());
  EXPECT_NE(before, after);
  m.set_interrupt(nullptr);
}

}  // namespace cairn
