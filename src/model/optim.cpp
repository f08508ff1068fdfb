// AdamW over the flat parameter buffer: one backend call per tensor (weight decay only where the
// table says so), after global-norm clipping folded into the gradient scale.
#include "cairn/optim.h"

#include <cmath>
#include <stdexcept>

namespace cairn {

float lr_at(const OptimConfig& c, int step) {
  if (c.warmup > 0 && step <= c.warmup) return c.lr * static_cast<float>(step) / static_cast<float>(c.warmup);
  const int decay_steps = std::max(1, c.total_steps - c.warmup);
  double progress = static_cast<double>(step - c.warmup) / decay_steps;
  progress = std::min(1.0, std::max(0.0, progress));
  const double min_lr = c.lr * c.min_lr_ratio;
  return static_cast<float>(min_lr + 0.5 * (c.lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

AdamW::AdamW(Model& model, const OptimConfig& cfg)
    : model_(model),
      cfg_(cfg),
      frozen_(model.frozen_layers()),
      begin_(model.trainable_begin()),
      m_(model.backend(), model.num_params() - begin_),
      v_(model.backend(), model.num_params() - begin_) {
  model_.backend().fill(m_.data(), 0.0f, m_.size());
  model_.backend().fill(v_.data(), 0.0f, v_.size());
}

double AdamW::step() {
  Backend& be = model_.backend();
  const double norm = std::sqrt(be.sum_squares(model_.grads(), model_.num_params()));
  ++step_;
  AdamWHyper h;
  h.lr = last_lr_ = lr_at(cfg_, step_);
  h.beta1 = cfg_.beta1, h.beta2 = cfg_.beta2, h.eps = cfg_.eps, h.step = step_;
  // A non-finite gradient never reaches the weights or the moments: the step is skipped (scaling by 0
  // would not do, NaN·0 is NaN). The step still counts, so the schedule stays aligned.
  if (!std::isfinite(norm)) return norm;
  h.grad_scale = (cfg_.clip > 0 && norm > cfg_.clip) ? static_cast<float>(cfg_.clip / norm) : 1.0f;
  if (model_.frozen_layers() != frozen_)
    throw std::logic_error("AdamW: the model's frozen layers changed after the optimizer was made");
  for (const ParamInfo& p : model_.table().tensors()) {
    if (!model_.trainable(p)) continue;  // frozen: no decay, no moments
    h.weight_decay = p.decay ? cfg_.weight_decay : 0.0f;
    const size_t k = p.offset - begin_;
    be.adamw_update(model_.params() + p.offset, model_.grads() + p.offset, m_.data() + k, v_.data() + k, p.numel, h);
  }
  return norm;
}

}  // namespace cairn
