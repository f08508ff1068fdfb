// The parameter size table (names and order: docs/run-directory.md#model-weights; docs/model.md#initialisation) and its deterministic initialisation.
#include <algorithm>
#include <cmath>
#include <string>
#include <stdexcept>

#include "cairn/params.h"
#include "util/rng.h"

namespace cairn {

size_t ParamTable::add(const std::string& name, std::vector<int64_t> shape, bool decay, InitKind init) {
  ParamInfo p;
  p.name = name;
  p.numel = 1;
  for (int64_t d : shape) p.numel *= static_cast<size_t>(d);
  p.shape = std::move(shape);
  p.offset = total_;
  p.decay = decay;
  p.init = init;
  p.layer = layer_;
  total_ += p.numel;
  tensors_.push_back(std::move(p));
  return tensors_.back().offset;
}

ParamTable::ParamTable(const ModelConfig& c) {
  const int64_t V = c.vocab_size, T = c.max_seq_len, C = c.d_model, F = c.d_ff, H = c.n_heads_out;
  const int64_t QKV = c.qkv_width(), A = static_cast<int64_t>(c.n_heads) * c.head_size();
  const bool llama = c.is_llama();
  // A bias the llama family does not have.
  auto bias = [&](const std::string& name, int64_t n) { return llama ? kNoParam : add(name, {n}, false, InitKind::Zeros); };
  tok_emb = add("tok_emb.weight", {V, C}, true, InitKind::Normal);
  pos_emb = llama ? kNoParam : add("pos_emb.weight", {T, C}, true, InitKind::Normal);
  for (int i = 0; i < c.n_layers; ++i) {
    layer_ = i;
    const std::string b = "blocks." + std::to_string(i) + ".";
    BlockParams bp;
    bp.ln1_w = add(b + "ln1.weight", {C}, false, InitKind::Ones);
    bp.ln1_b = bias(b + "ln1.bias", C);
    bp.qkv_w = add(b + "attn.qkv.weight", {QKV, C}, true, InitKind::Normal);
    bp.qkv_b = bias(b + "attn.qkv.bias", QKV);
    bp.proj_w = add(b + "attn.proj.weight", {C, A}, true, InitKind::NormalResidual);
    bp.proj_b = bias(b + "attn.proj.bias", C);
    bp.ln2_w = add(b + "ln2.weight", {C}, false, InitKind::Ones);
    bp.ln2_b = bias(b + "ln2.bias", C);
    bp.fc_w = add(b + "mlp.fc.weight", {llama ? 2 * F : F, C}, true, InitKind::Normal);
    bp.fc_b = bias(b + "mlp.fc.bias", F);
    bp.mp_w = add(b + "mlp.proj.weight", {C, F}, true, InitKind::NormalResidual);
    bp.mp_b = bias(b + "mlp.proj.bias", C);
    blocks.push_back(bp);
  }
  layer_ = c.n_layers;
  lnf_w = add("ln_f.weight", {C}, false, InitKind::Ones);
  lnf_b = bias("ln_f.bias", C);
  head_w = add("head.weight", {H, C}, true, InitKind::Normal);
  head_b = bias("head.bias", H);
}

const ParamInfo* ParamTable::find(const std::string& name) const {
  for (const auto& p : tensors_)
    if (p.name == name) return &p;
  return nullptr;
}

void init_params(const ParamTable& table, int n_layers, uint64_t seed, float* host) {
  Rng rng(seed);
  const double std_base = 0.02, std_resid = 0.02 / std::sqrt(2.0 * std::max(1, n_layers));
  for (const auto& p : table.tensors()) {
    float* w = host + p.offset;
    switch (p.init) {
      case InitKind::Zeros: for (size_t i = 0; i < p.numel; ++i) w[i] = 0.0f; break;
      case InitKind::Ones: for (size_t i = 0; i < p.numel; ++i) w[i] = 1.0f; break;
      case InitKind::Normal:
      case InitKind::NormalResidual: {
        const double sd = p.init == InitKind::Normal ? std_base : std_resid;
        for (size_t i = 0; i < p.numel; ++i) w[i] = static_cast<float>(sd * rng.normal());
        break;
      }
    }
  }
}

}  // namespace cairn

namespace cairn {

LayerRange ParamTable::layer_range(int layer) const {
  LayerRange r{layer, total_, 0};
  size_t n = 0;
  for (const ParamInfo& p : tensors_)
    if (p.layer == layer) r.begin = std::min(r.begin, p.offset), r.end = std::max(r.end, p.offset + p.numel), n += p.numel;
  if (n == 0) return {layer, 0, 0};
  if (r.end - r.begin != n) throw std::logic_error("ParamTable: the tensors of layer " + std::to_string(layer) + " are not contiguous");
  return r;
}

}  // namespace cairn
