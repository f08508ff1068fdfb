// FLOP accounting for a training step. Two numbers, both quoted by the benchmarks:
//   model FLOPs (the usual convention): 6·P_mm per token (forward 2·P_mm, backward 4·P_mm), P_mm the
//     parameters of the linear layers (qkv, proj, fc, mlp.proj, head; embeddings are lookups), plus
//     causal attention 3 × 2·T²·C per layer and sequence (forward 4·T²·C halved by the mask, backward
//     2× forward, no recomputation counted). Chosen and rejected sequences both count.
//   executed FLOPs: what cairn actually computes. The last block needs keys and values for every
//     token but its attention, proj and MLP only at the EOS row (the reward reads nothing else), so
//     there it counts 6·3C² per token + 6·(C² + 2·C·F) per sequence + 3·4·T·C attention per sequence;
//     frozen blocks (Model::set_frozen_layers) run forward only: 1/3 of a trained block.
// The linear-layer sizes follow the architecture (src/model/flops.cpp: llama's grouped qkv, SwiGLU).
// No padding exists: sequences are packed.
#pragma once
#include <cstdint>
#include <vector>

#include "cairn/config.h"

namespace cairn {

int64_t matmul_params(const ModelConfig& cfg);
double model_step_flops(const ModelConfig& cfg, const std::vector<int32_t>& seq_lens);
double executed_step_flops(const ModelConfig& cfg, const std::vector<int32_t>& seq_lens, int frozen_layers = 0);

}  // namespace cairn
