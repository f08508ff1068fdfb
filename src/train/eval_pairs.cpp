// Batched, gradient-free scoring of tokenized pairs, see eval_pairs.h.
#include "train/eval_pairs.h"

#include <algorithm>
#include <numeric>

#include "cairn/dist.h"
#include "cairn/reward.h"

namespace cairn {

PairScores score_pairs(BTObjective& obj, const ModelConfig& cfg, const std::vector<TokenizedPair>& pairs,
                       int batch_pairs, bool share, const ScoreProgress& progress) {
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
    if (progress) progress(e, pairs.size());
  }
  out.bt_loss = wsum > 0 ? loss / wsum : 0.0;
  return out;
}

PairScores score_pairs_split(const dist::Comm& comm, BTObjective& obj, const ModelConfig& cfg,
                             const std::vector<TokenizedPair>& pairs, int batch_pairs, bool share,
                             const ScoreProgress& progress) {
  if (!comm.distributed()) return score_pairs(obj, cfg, pairs, batch_pairs, share, progress);
  const auto [lo, hi] = dist::slice(pairs.size(), comm.rank(), comm.size());
  const std::vector<TokenizedPair> slice(pairs.begin() + lo, pairs.begin() + hi);
  PairScores mine;
  if (!slice.empty()) mine = score_pairs(obj, cfg, slice, batch_pairs, share, progress);
  PairScores all;
  all.chosen.resize(pairs.size()), all.rejected.resize(pairs.size());
  const std::vector<size_t> counts = comm.slice_counts(pairs.size());
  comm.allgatherv(mine.chosen.data(), mine.chosen.size(), all.chosen.data(), counts);
  comm.allgatherv(mine.rejected.data(), mine.rejected.size(), all.rejected.data(), counts);
  // loss·weight, weight (the BT loss is a weighted mean), decisions, tokens
  double sums[6] = {0, 0, static_cast<double>(mine.n_correct), static_cast<double>(mine.n_decided),
                    static_cast<double>(mine.sequence_tokens), static_cast<double>(mine.computed_tokens)};
  for (const TokenizedPair& p : slice) sums[1] += p.weight;
  sums[0] = mine.bt_loss * sums[1];
  comm.allreduce_sum(sums, 6);
  all.bt_loss = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  all.n_correct = static_cast<int>(sums[2]), all.n_decided = static_cast<int>(sums[3]);
  all.sequence_tokens = static_cast<long>(sums[4]), all.computed_tokens = static_cast<long>(sums[5]);
  return all;
}

}  // namespace cairn
