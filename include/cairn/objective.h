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
  double grad_norm = 0;
  float lr = 0;
};

class BTObjective {
 public:
  explicit BTObjective(Model& model, float center_coef = 0.0f);
  ~BTObjective();
  BTObjective(const BTObjective&) = delete;
  BTObjective& operator=(const BTObjective&) = delete;

  // Forward + loss + backward: gradients are ADDED to model.grads(). rewards_host, if given, gets [B,H].
  LossStats forward_backward(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                             std::vector<float>* rewards_host = nullptr);
  // Forward + loss only (no activations kept, no gradients).
  LossStats evaluate(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                     std::vector<float>* rewards_host = nullptr);
  // zero_grads + forward_backward + optimizer step.
  StepStats train_step(AdamW& opt, const TokenBatch& batch, const std::vector<PairTarget>& pairs);

 private:
  LossStats loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                 std::vector<float>* rewards_host);
  Model& model_;
  float center_coef_;
  PairTarget* d_pairs_ = nullptr;
  float* d_head_weights_ = nullptr;
  float* d_drewards_ = nullptr;
  size_t pairs_cap_ = 0, drewards_cap_ = 0;
  std::vector<float> rewards_;
};

}  // namespace cairn
