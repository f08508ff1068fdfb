// The two head-weight sets of include/cairn/reward.h.
#include "cairn/reward.h"

namespace cairn {

int ModelConfig::length_head() const {
  for (int h = 0; h < n_heads_out && h < static_cast<int>(head_names.size()); ++h)
    if (head_names[h] == "length" && head_weights[h] == 0.0f) return h;
  return -1;
}

std::vector<float> head_weights(const ModelConfig& cfg, HeadUse use) {
  std::vector<float> w = cfg.head_weights;
  const int lh = cfg.length_head();
  if (use == HeadUse::Training && lh >= 0) w[lh] = 1.0f;
  return w;
}

}  // namespace cairn
