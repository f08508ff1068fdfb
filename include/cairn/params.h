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
  int layer = -1;              // block index; −1 for the embeddings, n_layers for the final norm and head
  InitKind init = InitKind::Zeros;
};

// Offset of a tensor the architecture does not have (biases of the llama family, its pos_emb).
constexpr size_t kNoParam = static_cast<size_t>(-1);

// Offsets of the tensors of one block, for the model code (kNoParam where the arch has none).
// gpt2:  ln1/ln2 LayerNorm (w, b); qkv [3C, C]; fc [F, C]; mp [C, F]; all with biases.
// llama: ln1/ln2 RMSNorm (w); qkv [(NH+2·NKV)·HS, C] (q | k | v rows); fc [2F, C] (gate | up rows);
//        mp [C, F]; no biases.
struct BlockParams {
  size_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mp_w, mp_b;
};

// The floats [begin, end) of the flat buffer that hold every tensor of one layer (ParamInfo::layer).
struct LayerRange {
  int layer;
  size_t begin, end;
};

class ParamTable {
 public:
  explicit ParamTable(const ModelConfig& cfg);
  const std::vector<ParamInfo>& tensors() const { return tensors_; }
  size_t total() const { return total_; }
  const ParamInfo* find(const std::string& name) const;
  // Each layer's tensors are contiguous (the table is built layer by layer): their range.
  LayerRange layer_range(int layer) const;

  size_t tok_emb, pos_emb, lnf_w, lnf_b, head_w, head_b;  // pos_emb, lnf_b, head_b: gpt2 only
  std::vector<BlockParams> blocks;

 private:
  size_t add(const std::string& name, std::vector<int64_t> shape, bool decay, InitKind init);
  int layer_ = -1;  // the layer add() tags tensors with
  std::vector<ParamInfo> tensors_;
  size_t total_ = 0;
};

// GPT-2 style initialisation, deterministic in seed: N(0, 0.02); residual projections N(0, 0.02/√(2L)).
void init_params(const ParamTable& table, int n_layers, uint64_t seed, float* host_params);

}  // namespace cairn
