// FLOP accounting for a training step (the convention every cairn benchmark quotes):
//   matmuls: 6·P_mm per token (forward 2·P_mm, backward 4·P_mm), P_mm = parameters of the linear
//            layers (qkv, proj, fc, mlp.proj, head); embeddings are lookups and count nothing;
//   attention: per layer and sequence of length T, forward 4·T²·C halved for causal masking
//            (QKᵀ and PV), backward 2× forward (no recomputation counted): 3 × 2·T²·C in all.
// Chosen and rejected sequences both count; padding never exists (sequences are packed).
#pragma once
#include <cstdint>
#include <vector>

#include "cairn/config.h"

namespace cairn {

int64_t matmul_params(const ModelConfig& cfg);
// FLOPs of one training step (forward + backward) over sequences of the given lengths.
double train_step_flops(const ModelConfig& cfg, const std::vector<int32_t>& seq_lens);

}  // namespace cairn
