// The parameter table: every tensor of the model (names and shapes: docs/run-directory.md#model-weights) at an offset of ONE flat
// buffer. Parameters, gradients and both Adam moments use the same table, so zeroing, AdamW,
// clipping, checkpointing and all-reduce are each one loop over one buffer.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "cairn/config.h"

namespace cairn {

enum class InitKind { Normal, NormalResidual, Zeros, Ones };

struct ParamInfo {
  std::string name;            // docs/run-directory.md#model-weights name, e.g. "blocks.0.attn.qkv.weight"
  std::vector<int64_t> shape;  // PyTorch layout ([out, in] for linear weights)
  size_t offset = 0;           // in floats, into the flat buffer
  size_t numel = 0;
  bool decay = false;          // AdamW weight decay applies (matrices and embeddings only)
  InitKind init = InitKind::Zeros;
};

// Offsets of the tensors of one block, for the model code.
struct BlockParams {
  size_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mp_w, mp_b;
};

class ParamTable {
 public:
  explicit ParamTable(const ModelConfig& cfg);
  const std::vector<ParamInfo>& tensors() const { return tensors_; }
  size_t total() const { return total_; }
  const ParamInfo* find(const std::string& name) const;

  size_t tok_emb, pos_emb, lnf_w, lnf_b, head_w, head_b;
  std::vector<BlockParams> blocks;

 private:
  size_t add(const std::string& name, std::vector<int64_t> shape, bool decay, InitKind init);
  std::vector<ParamInfo> tensors_;
  size_t total_ = 0;
};

// GPT-2 style initialisation, deterministic in seed: N(0, 0.02); residual projections N(0, 0.02/√(2L)).
void init_params(const ParamTable& table, int n_layers, uint64_t seed, float* host_params);

}  // namespace cairn
