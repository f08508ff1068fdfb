// Scores tokenized pairs in batches (no gradients) and returns per-pair rewards — shared by the
// trainer's validation and `cairn eval`, so both report the same numbers for the same weights. Both
// the BT loss and the rewards use the Scoring head weights (include/cairn/reward.h).
#pragma once
#include <functional>
#include <vector>

#include "cairn/objective.h"
#include "train/batching.h"

namespace cairn {
namespace dist {
class Comm;
}

struct PairScores {
  std::vector<double> chosen, rejected;  // composite reward (or the pair's head) of each side
  double bt_loss = 0;                    // weighted mean BT loss
  int n_correct = 0, n_decided = 0;
  long sequence_tokens = 0, computed_tokens = 0;  // tokens of the sequences, and those computed (sharing)
  double accuracy() const { return n_decided ? static_cast<double>(n_correct) / n_decided : 0.0; }
};

// Called after each batch with the pairs scored so far (of this call's, or this rank's, pairs) and
// their total: a progress line.
using ScoreProgress = std::function<void(size_t done, size_t total)>;

// batch_pairs: pairs per forward; share: pack each pair's common prefix once (same rewards within
// fp32 summation-order noise). Reward per side: side_reward (the pair's head, else the composite).
PairScores score_pairs(BTObjective& obj, const ModelConfig& cfg, const std::vector<TokenizedPair>& pairs,
                       int batch_pairs, bool share, const ScoreProgress& progress = {});

// Data parallel (docs/distributed.md): each rank of `comm` scores its slice (dist::slice) of the
// pairs; the rewards are gathered in input order and the loss, counts and token totals summed, so
// every rank returns what score_pairs returns for all the pairs. One rank: score_pairs itself.
PairScores score_pairs_split(const dist::Comm& comm, BTObjective& obj, const ModelConfig& cfg,
                             const std::vector<TokenizedPair>& pairs, int batch_pairs, bool share,
                             const ScoreProgress& progress = {});

}  // namespace cairn
