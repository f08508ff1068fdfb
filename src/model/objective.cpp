// BTObjective: forward → Bradley–Terry loss (Backend::bt_loss) → backward, see objective.h.
#include "cairn/objective.h"

#include <stdexcept>

namespace cairn {

BTObjective::BTObjective(Model& model, float center_coef) : model_(model), center_coef_(center_coef) {
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  d_head_weights_ = static_cast<float*>(be.alloc_bytes(c.n_heads_out * sizeof(float)));
  be.to_device(d_head_weights_, c.head_weights.data(), c.n_heads_out * sizeof(float));
}

BTObjective::~BTObjective() {
  Backend& be = model_.backend();
  be.free_bytes(d_head_weights_);
  if (d_pairs_) be.free_bytes(d_pairs_);
  if (d_drewards_) be.free_bytes(d_drewards_);
}

LossStats BTObjective::loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                            std::vector<float>* rewards_host) {
  Backend& be = model_.backend();
  const int B = batch.n_seqs(), H = model_.config().n_heads_out;
  for (const PairTarget& p : pairs)
    if (p.chosen < 0 || p.chosen >= B || p.rejected < 0 || p.rejected >= B || p.head < -1 || p.head >= H)
      throw std::invalid_argument("BTObjective: pair indexes a sequence or head outside the batch");
  if (pairs.size() > pairs_cap_) {
    if (d_pairs_) be.free_bytes(d_pairs_);
    pairs_cap_ = pairs.size() * 2;
    d_pairs_ = static_cast<PairTarget*>(be.alloc_bytes(pairs_cap_ * sizeof(PairTarget)));
  }
  const size_t nr = static_cast<size_t>(B) * H;
  if (nr > drewards_cap_) {
    if (d_drewards_) be.free_bytes(d_drewards_);
    drewards_cap_ = nr * 2;
    d_drewards_ = static_cast<float*>(be.alloc_bytes(drewards_cap_ * sizeof(float)));
  }
  model_.forward(batch, rewards_host ? *rewards_host : rewards_, train);
  be.to_device(d_pairs_, pairs.data(), pairs.size() * sizeof(PairTarget));
  be.fill(d_drewards_, 0.0f, nr);
  LossStats st = be.bt_loss(d_drewards_, model_.rewards_device(), d_pairs_, static_cast<int>(pairs.size()), H,
                            d_head_weights_, center_coef_);
  if (train) model_.backward_device(d_drewards_);
  return st;
}

LossStats BTObjective::forward_backward(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                        std::vector<float>* rewards_host) {
  return loss(batch, pairs, true, rewards_host);
}

LossStats BTObjective::evaluate(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                std::vector<float>* rewards_host) {
  return loss(batch, pairs, false, rewards_host);
}

StepStats BTObjective::train_step(AdamW& opt, const TokenBatch& batch, const std::vector<PairTarget>& pairs) {
  StepStats s;
  model_.zero_grads();
  s.loss = forward_backward(batch, pairs);
  s.grad_norm = opt.step();
  s.lr = opt.last_lr();
  return s;
}

}  // namespace cairn
