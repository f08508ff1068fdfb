// A synthetic preference task for learnability tests (CPU and GPU): the chosen sequence contains the
// bigram (7, 13) at a random position; the rejected one is the same sequence with the bigram broken.
#pragma once
#include <vector>

#include "cairn/backend.h"
#include "cairn/model.h"
#include "cairn/objective.h"
#include "cairn/optim.h"
#include "util/rng.h"

namespace cairn::test {

struct SyntheticPairs {
  TokenBatch batch;
  std::vector<PairTarget> pairs;
};
inline SyntheticPairs synthetic_pairs(int n_pairs, int V, Rng& rng) {
  SyntheticPairs s;
  s.batch.clear();
  for (int i = 0; i < n_pairs; ++i) {
    const int len = 8 + static_cast<int>(rng.below(17));
    std::vector<int32_t> seq(len);
    for (auto& t : seq) t = 3 + static_cast<int32_t>(rng.below(V - 3));
    seq.front() = 1;
    seq.back() = 2;
    for (int k = 1; k + 1 < len - 1; ++k)  // no accidental bigram
      if (seq[k] == 7 && seq[k + 1] == 13) seq[k + 1] = 14;
    std::vector<int32_t> good = seq, bad = seq;
    const int at = 1 + static_cast<int>(rng.below(len - 3));
    good[at] = 7, good[at + 1] = 13;
    bad[at] = 7, bad[at + 1] = 12;
    const bool chosen_first = rng.below(2);
    s.batch.add(chosen_first ? good : bad);
    s.batch.add(chosen_first ? bad : good);
    PairTarget p;
    p.chosen = chosen_first ? 2 * i : 2 * i + 1;
    p.rejected = chosen_first ? 2 * i + 1 : 2 * i;
    s.pairs.push_back(p);
  }
  return s;
}

// Trains a small model on the task for `steps` steps; held-out accuracy on 400 fresh pairs.
inline std::vector<float> train_synthetic(Backend& be, int steps, uint64_t seed, double* heldout_acc) {
  ModelConfig cfg;
  cfg.vocab_size = 32, cfg.max_seq_len = 32, cfg.d_model = 32, cfg.n_layers = 2, cfg.n_heads = 2, cfg.d_ff = 64;
  Model m(cfg, be);
  m.init(seed);
  OptimConfig oc;
  oc.lr = 3e-3f, oc.warmup = 10, oc.total_steps = steps, oc.weight_decay = 0.01f;
  AdamW opt(m, oc);
  BTObjective obj(m);
  Rng rng(seed + 1);
  for (int s = 0; s < steps; ++s) {
    auto data = synthetic_pairs(16, cfg.vocab_size, rng);
    obj.train_step(opt, data.batch, data.pairs);
  }
  if (heldout_acc) {
    Rng test_rng(seed + 12345);
    auto test = synthetic_pairs(400, cfg.vocab_size, test_rng);
    LossStats st = obj.evaluate(test.batch, test.pairs);
    *heldout_acc = static_cast<double>(st.n_correct) / st.n_decided;
  }
  std::vector<float> p(m.num_params());
  m.get_params(p.data());
  return p;
}

}  // namespace cairn::test
