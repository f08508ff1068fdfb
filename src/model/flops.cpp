// FLOP accounting, see include/cairn/flops.h.
#include "cairn/flops.h"

namespace cairn {

int64_t matmul_params(const ModelConfig& c) {
  const int64_t C = c.d_model, F = c.d_ff;
  return c.n_layers * (4 * C * C + 2 * C * F) + static_cast<int64_t>(c.n_heads_out) * C;
}

double model_step_flops(const ModelConfig& c, const std::vector<int32_t>& seq_lens) {
  double tokens = 0, attn = 0;
  for (int32_t T : seq_lens) {
    tokens += T;
    attn += 3.0 * 2.0 * static_cast<double>(T) * T * c.d_model * c.n_layers;
  }
  return 6.0 * static_cast<double>(matmul_params(c)) * tokens + attn;
}

double executed_step_flops(const ModelConfig& c, const std::vector<int32_t>& seq_lens) {
  if (c.n_layers == 0) return 6.0 * c.n_heads_out * c.d_model * seq_lens.size();
  const double C = c.d_model, F = c.d_ff, L = c.n_layers;
  double flops = 0;
  for (int32_t T : seq_lens) {
    flops += 6.0 * (L - 1) * (4 * C * C + 2 * C * F) * T + 3.0 * 2.0 * static_cast<double>(T) * T * C * (L - 1);  // full blocks
    flops += 6.0 * 3 * C * C * T + 6.0 * (C * C + 2 * C * F) + 3.0 * 4.0 * T * C;  // last block: kv for all, rest at EOS
    flops += 6.0 * c.n_heads_out * C;                                                // head
  }
  return flops;
}

}  // namespace cairn
