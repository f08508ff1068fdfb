// Batched, gradient-free scoring of tokenized pairs, see eval_pairs.h.
#include "train/eval_pairs.h"

#include <algorithm>
#include <numeric>

#include "cairn/reward.h"

namespace cairn {

PairScores score_pairs(BTObjective& obj, const ModelConfig& cfg, const std::vector<TokenizedPair>& pairs,
                       int batch_pairs, bool share) {
  PairScores out;
  out.chosen.resize(pairs.size());
  out.rejected.resize(pairs.size());
  std::vector<size_t> idx(pairs.size());
  std::iota(idx.begin(), idx.end(), 0);
  TokenBatch batch;
  std::vector<PairTarget> targets;
  std::vector<float> rewards;
  double wsum = 0, loss = 0;
  const int H = cfg.n_heads_out;
  const std::vector<float> weights = head_weights(cfg, HeadUse::Scoring);
  for (size_t b = 0; b < pairs.size(); b += batch_pairs) {
    const size_t e = std::min(pairs.size(), b + batch_pairs);
    build_batch(pairs, idx, b, e, share, &batch, &targets);
    LossStats st = obj.evaluate(batch, targets, &rewards);
    out.sequence_tokens += batch.sequence_tokens(), out.computed_tokens += batch.n_tokens();
    double w = 0;
    for (const auto& t : targets) w += t.weight;
    loss += st.bt_loss * w;
    wsum += w;
    for (size_t k = b; k < e; ++k) {
      const PairTarget& t = targets[k - b];
      out.chosen[k] = side_reward(rewards.data(), t.chosen, t.head, H, weights.data());
      out.rejected[k] = side_reward(rewards.data(), t.rejected, t.head, H, weights.data());
      if (t.label == 0.5f) continue;
      ++out.n_decided;
      out.n_correct += t.label > 0.5f ? out.chosen[k] > out.rejected[k] : out.chosen[k] < out.rejected[k];
    }
  }
  out.bt_loss = wsum > 0 ? loss / wsum : 0.0;
  return out;
}

}  // namespace cairn
