// FLOP accounting, see include/cairn/flops.h. Per block, the linear layers hold
//   gpt2:  qkv 3C², proj C², fc C·F, mlp.proj F·C          (4C² + 2CF)
//   llama: qkv C·QKV, proj C·A, fc 2·C·F, mlp.proj F·C     (QKV = (NH+2·NKV)·HS, A = NH·HS)
#include "cairn/flops.h"

namespace cairn {
namespace {
struct BlockCounts {
  double qkv, rest;  // parameters of the qkv projection; of proj + MLP
};
BlockCounts block_counts(const ModelConfig& c) {
  const double C = c.d_model, F = c.d_ff, A = static_cast<double>(c.n_heads) * c.head_size();
  if (c.is_llama()) return {C * c.qkv_width(), C * A + 3 * C * F};
  return {3 * C * C, C * C + 2 * C * F};
}
}  // namespace

int64_t matmul_params(const ModelConfig& c) {
  const BlockCounts b = block_counts(c);
  return static_cast<int64_t>(c.n_layers * (b.qkv + b.rest)) + static_cast<int64_t>(c.n_heads_out) * c.d_model;
}

double model_step_flops(const ModelConfig& c, const std::vector<int32_t>& seq_lens) {
  double tokens = 0, attn = 0;
  const double A = static_cast<double>(c.n_heads) * c.head_size();
  for (int32_t T : seq_lens) {
    tokens += T;
    attn += 3.0 * 2.0 * static_cast<double>(T) * T * A * c.n_layers;
  }
  return 6.0 * static_cast<double>(matmul_params(c)) * tokens + attn;
}

double executed_step_flops(const ModelConfig& c, const std::vector<int32_t>& seq_lens, int frozen_layers) {
  if (c.n_layers == 0) return 6.0 * c.n_heads_out * c.d_model * seq_lens.size();
  const BlockCounts b = block_counts(c);
  const double A = static_cast<double>(c.n_heads) * c.head_size();
  double flops = 0;
  for (int32_t T : seq_lens)
    for (int l = 0; l < c.n_layers; ++l) {
      const double k = l < frozen_layers ? 1.0 : 3.0;  // forward only, or forward + backward (2× forward)
      if (l < c.n_layers - 1) {
        flops += k * (2.0 * (b.qkv + b.rest) * T + 2.0 * static_cast<double>(T) * T * A);  // causal: half of 4T²A
      } else {  // the last block: qkv for all tokens, attention, proj and MLP at the last token only
        flops += k * (2.0 * b.qkv * T + 2.0 * b.rest + 4.0 * T * A);
        flops += 6.0 * c.n_heads_out * c.d_model;  // head
      }
    }
  return flops;
}

}  // namespace cairn
