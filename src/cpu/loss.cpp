// Bradley–Terry loss on the CPU (docs/model.md#loss), in double precision (B is small).
//   r_b = side_reward (include/cairn/reward.h): rewards[b, head], or the composite for head −1
//   Δ = r_c − r_r − margin,  p = label
//   ℓ = −p·log σ(Δ) − (1−p)·log σ(−Δ) = p·softplus(−Δ) + (1−p)·softplus(Δ);   dℓ/dΔ = σ(Δ) − p
//   L = Σ w·ℓ / Σ w  +  center_coef · mean_pairs (r_c + r_r)²
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "cairn/reward.h"
#include "cpu/ops.h"

namespace cairn::cpu {
namespace {
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }
}  // namespace

LossStats bt_loss(float* drewards, const float* rewards, const PairTarget* pairs, int P, int H,
                  const float* head_weights, float center_coef) {
  LossStats st;
  double wsum = 0;
  for (int i = 0; i < P; ++i) wsum += pairs[i].weight;
  if (P == 0 || !(wsum > 0)) throw std::invalid_argument("bt_loss: no pairs or non-positive total weight");

  std::vector<double> grad;  // (B·H) accumulated in double, written once at the end
  int B = 0;
  for (int i = 0; i < P; ++i) B = std::max({B, pairs[i].chosen + 1, pairs[i].rejected + 1});
  grad.assign(static_cast<size_t>(B) * H, 0.0);
  auto add_grad = [&](int b, int head, double g) {
    if (head >= 0) return void(grad[static_cast<size_t>(b) * H + head] += g);
    for (int h = 0; h < H; ++h) grad[static_cast<size_t>(b) * H + h] += head_weights[h] * g;
  };

  double bt = 0, center = 0;
  for (int i = 0; i < P; ++i) {
    const PairTarget& q = pairs[i];
    const double rc = side_reward(rewards, q.chosen, q.head, H, head_weights);
    const double rr = side_reward(rewards, q.rejected, q.head, H, head_weights);
    const double d = rc - rr - q.margin, p = q.label, w = q.weight / wsum;
    bt += w * (p * softplus(-d) + (1 - p) * softplus(d));
    const double g = w * (sigmoid(d) - p);
    double gc = g, gr = -g;
    if (center_coef != 0.0f) {
      const double s = rc + rr;
      center += center_coef * s * s / P;
      gc += 2.0 * center_coef * s / P;
      gr += 2.0 * center_coef * s / P;
    }
    add_grad(q.chosen, q.head, gc);
    add_grad(q.rejected, q.head, gr);
    if (q.label != 0.5f) {
      ++st.n_decided;
      if (q.label > 0.5f ? rc > rr : rc < rr) ++st.n_correct;
    }
  }
  st.bt_loss = bt;
  st.loss = bt + center;
  for (size_t k = 0; k < grad.size(); ++k) drewards[k] = static_cast<float>(grad[k]);
  return st;
}

}  // namespace cairn::cpu
