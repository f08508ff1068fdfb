// Bradley–Terry loss on the GPU (docs/model.md#loss), in double precision like the CPU version (P is small):
//   r_b = side_reward (include/cairn/reward.h): rewards[b, head], or the composite for head −1
//   Δ = r_c − r_r − margin,  p = label
//   ℓ = p·softplus(−Δ) + (1−p)·softplus(Δ);   dℓ/dΔ = σ(Δ) − p
//   L = Σ w·ℓ / Σ w  +  center_coef · mean_pairs (r_c + r_r)²
// One block: pairs are evaluated in parallel, then one thread adds their terms and gradients in pair
// order, so the result is deterministic and a sequence shared by several pairs is handled.
#include "cairn/reward.h"
#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr int kThreads = 256;

__device__ double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
__device__ double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

// scratch: 4·P doubles (per pair: loss term, centre term, dℓ/dr_c, dℓ/dr_r)
__global__ void bt_loss_kernel(float* drewards, double* stats, double* scratch, const float* rewards,
                               const PairTarget* pairs, int P, int H, const float* hw, float center_coef) {
  __shared__ double s_w[kThreads];
  __shared__ int s_b[kThreads];
  const int tid = threadIdx.x;
  double w = 0;
  int bmax = 0;
  for (int i = tid; i < P; i += kThreads) {
    w += pairs[i].weight;
    bmax = max(bmax, max(pairs[i].chosen, pairs[i].rejected) + 1);
  }
  s_w[tid] = w, s_b[tid] = bmax;
  __syncthreads();
  if (tid == 0) {
    double tw = 0;
    int tb = 0;
    for (int k = 0; k < kThreads; ++k) tw += s_w[k], tb = max(tb, s_b[k]);
    s_w[0] = tw, s_b[0] = tb;
  }
  __syncthreads();
  const double wsum = s_w[0];
  const int B = s_b[0];
  if (!(wsum > 0)) {
    if (tid == 0) stats[0] = stats[1] = stats[2] = stats[3] = 0, stats[4] = wsum;
    return;
  }
  for (int k = tid; k < B * H; k += kThreads) drewards[k] = 0.0f;
  for (int i = tid; i < P; i += kThreads) {
    const PairTarget q = pairs[i];
    const double rc = side_reward(rewards, q.chosen, q.head, H, hw), rr = side_reward(rewards, q.rejected, q.head, H, hw);
    const double d = rc - rr - q.margin, p = q.label, wi = q.weight / wsum;
    const double g = wi * (sigmoid(d) - p);
    double gc = g, gr = -g, centre = 0;
    if (center_coef != 0.0f) {
      const double s = rc + rr;
      centre = center_coef * s * s / P;
      gc += 2.0 * center_coef * s / P;
      gr += 2.0 * center_coef * s / P;
    }
    double* o = scratch + 4 * size_t(i);
    o[0] = wi * (p * softplus(-d) + (1 - p) * softplus(d));
    o[1] = centre;
    o[2] = gc;
    o[3] = gr;
  }
  __syncthreads();
  if (tid != 0) return;
  double bt = 0, centre = 0;
  int correct = 0, decided = 0;
  for (int i = 0; i < P; ++i) {
    const PairTarget q = pairs[i];
    const double* o = scratch + 4 * size_t(i);
    bt += o[0];
    centre += o[1];
    for (int side = 0; side < 2; ++side) {
      const int b = side ? q.rejected : q.chosen;
      const double g = o[2 + side];
      if (q.head >= 0) drewards[size_t(b) * H + q.head] += float(g);
      else
        for (int h = 0; h < H; ++h) drewards[size_t(b) * H + h] += float(hw[h] * g);
    }
    if (q.label != 0.5f) {
      ++decided;
      const double rc = side_reward(rewards, q.chosen, q.head, H, hw), rr = side_reward(rewards, q.rejected, q.head, H, hw);
      if (q.label > 0.5f ? rc > rr : rc < rr) ++correct;
    }
  }
  stats[0] = bt + centre, stats[1] = bt, stats[2] = correct, stats[3] = decided, stats[4] = wsum;
}

}  // namespace

void bt_loss(float* drewards, double* stats, double* scratch, const float* rewards, const PairTarget* pairs, int P,
             int H, const float* head_weights, float center_coef, cudaStream_t s) {
  bt_loss_kernel<<<1, kThreads, 0, s>>>(drewards, stats, scratch, rewards, pairs, P, H, head_weights, center_coef);
  CAIRN_CUDA_LAUNCH_CHECK("bt_loss");
}

}  // namespace cairn::cuda
