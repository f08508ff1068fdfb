// The Bradley–Terry objective over a model (docs/model.md#loss): runs the forward pass on a batch
// holding both sides of every pair, the loss on the backend, and the backward pass. Owns the small
// device buffers (pairs, head weights, reward gradients) so callers deal only in host structures.
//
// Which composite the loss sees (include/cairn/reward.h): training steps (forward_backward,
// train_step) use the Training head weights; evaluate() uses the Scoring weights, so validation
// during training reports exactly what `cairn eval` reports for the same weights and pairs.
#pragma once
#include <vector>

#include "cairn/buffer.h"
#include "cairn/model.h"
#include "cairn/optim.h"

namespace cairn {
namespace dist {
class Comm;
}

struct StepStats {
  LossStats loss;
  double grad_norm = 0;
  float lr = 0;
};

class BTObjective {
 public:
  explicit BTObjective(Model& model, float center_coef = 0.0f);

  // Length debiasing (ODIN-style, docs/model.md#length-debiasing), for a model whose config has a
  // length head: the BT loss of a training step uses quality + length; a penalty λ·(ρ(quality, len)²
  // + 1 − ρ(length head, len)) over each batch (Pearson ρ against response length) pushes the quality
  // reward to be uncorrelated with length. Scoring gives the length head weight 0.
  void set_length_lambda(float lambda);

  // Forward + loss + backward: gradients are ADDED to model.grads(). rewards_host, if given, gets [B,H].
  // seq_lengths (B response lengths) is needed when length debiasing is on.
  LossStats forward_backward(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                             std::vector<float>* rewards_host = nullptr, const std::vector<float>* seq_lengths = nullptr);
  // Data parallel (docs/distributed.md#the-loss): `batch` holds this rank's slice of a global batch
  // (it may be empty); `pairs` and `seq_lengths` are the whole global batch's, their sequence indices
  // running over the sequences of all ranks in rank order, seqs_per_rank[r] of them on rank r. The
  // rewards are all-gathered, every rank takes the loss of the global batch (so the loss, its
  // statistics and a batch-level penalty are those of one process), and backward runs on this
  // rank's rows: the gradients summed over the ranks are the global batch's.
  LossStats forward_backward_shard(const dist::Comm& comm, const std::vector<size_t>& seqs_per_rank,
                                   const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                   const std::vector<float>* seq_lengths = nullptr);
  // Forward + loss with the Scoring weights (no activations kept, no gradients).
  LossStats evaluate(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                     std::vector<float>* rewards_host = nullptr);
  // zero_grads + forward_backward + optimizer step.
  StepStats train_step(AdamW& opt, const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                       const std::vector<float>* seq_lengths = nullptr);

 private:
  struct Shard {
    const dist::Comm& comm;
    const std::vector<size_t>& seqs_per_rank;
  };
  LossStats loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                 std::vector<float>* rewards_host, const std::vector<float>* seq_lengths, const Shard* shard = nullptr);
  // Adds the decorrelation penalty's gradient to the device reward gradients; returns its value.
  double length_penalty(const std::vector<float>& rewards, const std::vector<float>& lengths, int B);

  Model& model_;
  float center_coef_;
  std::vector<float> scoring_weights_;
  DeviceArray<float> d_training_weights_, d_scoring_weights_;  // (H) each
  float length_lambda_ = 0.0f;
  DeviceArray<PairTarget> d_pairs_;                            // (P)
  DeviceArray<float> d_drewards_;                              // (B,H)
  DeviceArray<float> d_gathered_;                              // (B,H) a sharded batch's rewards, all ranks
  std::vector<float> rewards_;
};

}  // namespace cairn
