// The reward of a sequence, defined once (docs/model.md#reward-heads). A model has H reward heads;
// rewards[b, h] is head h of sequence b. What a pair compares is either one head (a pair tagged with a
// principle trains that principle's head) or the composite Σ_h w_h · rewards[b, h], accumulated in
// double in head order. Every place that forms a composite calls side_reward: the CPU and CUDA
// losses, validation and `cairn eval`, `cairn score`, the length-debiasing penalty.
//
// Two weight sets over the heads, named by their use:
//   Scoring  — config.json head_weights: what `score` writes as "reward", what `eval` and the
//              trainer's validation judge. A length head (docs/model.md#length-debiasing) has weight 0.
//   Training — what the Bradley–Terry loss of a training step sees: the scoring weights, with the
//              length head at weight 1 (the BT loss is applied to quality + length).
#pragma once
#include <cstddef>
#include <vector>

#include "cairn/config.h"

#if defined(__CUDACC__)
#define CAIRN_HOST_DEVICE __host__ __device__
#else
#define CAIRN_HOST_DEVICE
#endif

namespace cairn {

// head ≥ 0: rewards[b, head]; head −1: Σ_h w[h]·rewards[b, h] (double, in head order).
CAIRN_HOST_DEVICE inline double side_reward(const float* rewards, int b, int head, int H, const float* w) {
  const float* r = rewards + static_cast<size_t>(b) * H;
  if (head >= 0) return r[head];
  double s = 0;
  for (int h = 0; h < H; ++h) s += static_cast<double>(w[h]) * r[h];
  return s;
}

enum class HeadUse { Scoring, Training };

// The weight set of that use (H = cfg.n_heads_out values).
std::vector<float> head_weights(const ModelConfig& cfg, HeadUse use);

}  // namespace cairn
