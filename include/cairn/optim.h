// AdamW with linear warmup + cosine decay and global-norm clipping, over the model's flat buffers.
#pragma once
#include <cstddef>

#include "cairn/buffer.h"
#include "cairn/model.h"

namespace cairn {

struct OptimConfig {
  float lr = 3e-4f;
  float min_lr_ratio = 0.1f;  // cosine decays to lr·min_lr_ratio
  int warmup = 100;
  int total_steps = 1000;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.01f;  // matrices and embeddings only
  float clip = 1.0f;           // global-norm clip; ≤ 0 disables
};

// Learning rate at 1-based step: linear warmup to lr, then cosine down to lr·min_lr_ratio.
float lr_at(const OptimConfig& cfg, int step);

class AdamW {
 public:
  AdamW(Model& model, const OptimConfig& cfg);
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update from the model's gradients. Returns the global gradient norm before clipping.
  double step();
  int steps_done() const { return step_; }
  void set_steps_done(int s) { step_ = s; }
  float last_lr() const { return last_lr_; }
  const OptimConfig& config() const { return cfg_; }
  // Moments as flat device buffers laid out like the parameters, for the trainable ones only: they
  // hold parameters [moments_begin(), num_params) (the model's trainable_begin() when the optimizer
  // was made; frozen parameters have no moments, which saves 8 bytes per frozen parameter).
  float* m() { return m_.data(); }
  float* v() { return v_.data(); }
  const float* m() const { return m_.data(); }
  const float* v() const { return v_.data(); }
  size_t moments_begin() const { return begin_; }
  size_t moments_size() const { return m_.size(); }

 private:
  Model& model_;
  OptimConfig cfg_;
  int frozen_;                // the model's frozen layers when the optimizer was made
  size_t begin_;              // first parameter with moments
  DeviceArray<float> m_, v_;  // (num_params - begin_) each
  int step_ = 0;
  float last_lr_ = 0;
};

}  // namespace cairn
