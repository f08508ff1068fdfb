// Batched, gradient-free scoring of tokenized pairs, see eval_pairs.h.
#include "train/eval_pairs.h"

#include <algorithm>
#include <numeric>

namespace cairn {

PairScores score_pairs(BTObjective& obj, const ModelConfig& cfg, const std::vector<TokenizedPair>& pairs,
                       int batch_pairs) {
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
  auto reward = [&](int b, int head) {
    if (head >= 0) return static_cast<double>(rewards[static_cast<size_t>(b) * H + head]);
    double r = 0;
    for (int h = 0; h < H; ++h) r += cfg.head_weights[h] * rewards[static_cast<size_t>(b) * H + h];
    return r;
  };
  for (size_t b = 0; b < pairs.size(); b += batch_pairs) {
    const size_t e = std::min(pairs.size(), b + batch_pairs);
    build_batch(pairs, idx, b, e, &batch, &targets);
    LossStats st = obj.evaluate(batch, targets, &rewards);
    double w = 0;
    for (const auto& t : targets) w += t.weight;
    loss += st.bt_loss * w;
    wsum += w;
    for (size_t k = b; k < e; ++k) {  // judged by the scoring reward (config head_weights)
      const PairTarget& t = targets[k - b];
      out.chosen[k] = reward(t.chosen, t.head);
      out.rejected[k] = reward(t.rejected, t.head);
      if (t.label == 0.5f) continue;
      ++out.n_decided;
      out.n_correct += t.label > 0.5f ? out.chosen[k] > out.rejected[k] : out.chosen[k] < out.rejected[k];
    }
  }
  out.bt_loss = wsum > 0 ? loss / wsum : 0.0;
  return out;
}

}  // namespace cairn
