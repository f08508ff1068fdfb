// The Bradley–Terry objective over a model: runs the forward pass on a batch holding both sides of
// every pair, the loss on the backend, and the backward pass. Owns the small device buffers (pairs,
// head weights, reward gradients) so callers deal only in host structures.
#pragma once
#include <vector>

#include "cairn/model.h"
#include "cairn/optim.h"

namespace cairn {

struct StepStats {
  LossStats loss;
  double length_penalty = 0;
  double grad_norm = 0;
  float lr = 0;
};

class BTObjective {
 public:
  explicit BTObjective(Model& model, float center_coef = 0.0f);
  ~BTObjective();
  BTObjective(const BTObjective&) = delete;
  BTObjective& operator=(const BTObjective&) = delete;

  // Length debiasing (ODIN-style): head `length_head` is trained to carry the length signal. The BT
  // loss uses the quality composite PLUS the length head; a penalty λ·(ρ(quality, len)² + 1 − ρ(length
  // head, len)) over each batch (Pearson ρ against response length) pushes the quality reward to be
  // uncorrelated with length. At scoring time the length head has weight 0 (config head_weights).
  void set_length_debias(int length_head, float lambda);

  // Forward + loss + backward: gradients are ADDED to model.grads(). rewards_host, if given, gets [B,H].
  // seq_lengths (B response lengths) is needed when length debiasing is on.
  LossStats forward_backward(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                             std::vector<float>* rewards_host = nullptr, const std::vector<float>* seq_lengths = nullptr);
  // Forward + loss only (no activations kept, no gradients).
  LossStats evaluate(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                     std::vector<float>* rewards_host = nullptr);
  // zero_grads + forward_backward + optimizer step.
  StepStats train_step(AdamW& opt, const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                       const std::vector<float>* seq_lengths = nullptr);

 private:
  LossStats loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                 std::vector<float>* rewards_host, const std::vector<float>* seq_lengths);
  // Adds the decorrelation penalty's gradient to the device reward gradients; returns its value.
  double length_penalty(const std::vector<float>& rewards, const std::vector<float>& lengths, int B);
  Model& model_;
  float center_coef_;
  PairTarget* d_pairs_ = nullptr;
  float* d_head_weights_ = nullptr;  // composite used by the BT loss (length head included when debiasing)
  int length_head_ = -1;
  float length_lambda_ = 0.0f;
  float* d_drewards_ = nullptr;
  size_t pairs_cap_ = 0, drewards_cap_ = 0;
  std::vector<float> rewards_;
};

}  // namespace cairn
