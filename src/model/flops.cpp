// FLOP accounting, see include/cairn/flops.h.
#include "cairn/flops.h"

namespace cairn {

int64_t matmul_params(const ModelConfig& c) {
  const int64_t C = c.d_model, F = c.d_ff;
  return c.n_layers * (3 * C * C + C * C + 2 * C * F) + static_cast<int64_t>(c.n_heads_out) * C;
}

double train_step_flops(const ModelConfig& c, const std::vector<int32_t>& seq_lens) {
  double tokens = 0, attn = 0;
  for (int32_t T : seq_lens) {
    tokens += T;
    attn += 3.0 * 2.0 * static_cast<double>(T) * T * c.d_model * c.n_layers;
  }
  return 6.0 * static_cast<double>(matmul_params(c)) * tokens + attn;
}

}  // namespace cairn
