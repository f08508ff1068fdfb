// LayerNorm forward/backward (eps 1e-5), RMSNorm forward/backward (the llama family; eps given) and
// deterministic column sums (LayerNorm w/b, RMSNorm w and linear-bias gradients). One warp per row,
// fp32 throughout; LayerNorm takes two-pass statistics (mean, then Σ(x − mean)²) so a large common
// offset does not cancel catastrophically (RMSNorm's Σx² has no cancellation).
//   LayerNorm forward:  x̂ = (x − μ)·rstd,  y = x̂·w + b
//             backward: dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)),  dx̂ = dy·w
//                       dw += Σ_rows dy·x̂,  db += Σ_rows dy
//   RMSNorm   forward:  rstd = 1/√(mean x² + eps),  x̂ = x·rstd,  y = x̂·w
//             backward: y_i = w_i·x_i·r with r = (Σ_j x_j²/C + eps)^(−1/2), ∂r/∂x_j = −r³·x_j/C, so
//                       dx_j = r·dx̂_j − r³·x_j·(1/C)Σ_i dx̂_i·x_i = r·(dx̂_j − x̂_j·mean(dx̂·x̂)),  dx̂ = dy·w
//                       dw += Σ_rows dy·x̂
// Column sums: rows are cut into S fixed slices; a block sums its slice for 32 columns in a fixed
// order, then a second kernel adds the S partials in order. Same inputs → same bits.
#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxSplits = 64;

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* w,
                                         const float* b, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  float s = 0;
  for (int c = lane; c < C; c += 32) s += x[c];
  const float mu = warp_sum(s) / C;
  float v = 0;
  for (int c = lane; c < C; c += 32) v += (x[c] - mu) * (x[c] - mu);
  const float rs = rsqrtf(warp_sum(v) / C + 1e-5f);
  float* y = out + size_t(row) * C;
  for (int c = lane; c < C; c += 32) y[c] = (x[c] - mu) * rs * w[c] + b[c];
  if (lane == 0) mean[row] = mu, rstd[row] = rs;
}

// 1/sqrtf (both correctly rounded) rather than rsqrtf, as the CPU backend computes r. r still differs
// from the CPU's in the last bits: the CPU sums x² in double, this kernel in fp32 lane partials and a
// shuffle tree (the GPU tests allow for it).
__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                                       float eps) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  float ss = 0;
  for (int c = lane; c < C; c += 32) ss += x[c] * x[c];
  const float r = 1.0f / sqrtf(warp_sum(ss) / C + eps);
  float* y = out + size_t(row) * C;
  for (int c = lane; c < C; c += 32) y[c] = w[c] * (x[c] * r);
  if (lane == 0) rstd[row] = r;
}

__global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* w,
                                        const float* rstd, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  const float* dy = dout + size_t(row) * C;
  const float r = rstd[row];
  float s = 0;  // Σ dx̂·x̂
  for (int c = lane; c < C; c += 32) s += dy[c] * w[c] * (x[c] * r);
  const float m = warp_sum(s) / C;
  float* dx = dinp + size_t(row) * C;
  for (int c = lane; c < C; c += 32) dx[c] += r * (dy[c] * w[c] - x[c] * r * m);
}

__global__ void layernorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* w,
                                          const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  const float* dy = dout + size_t(row) * C;
  const float mu = mean[row], rs = rstd[row];
  float s1 = 0, s2 = 0;  // Σ dx̂, Σ dx̂·x̂
  for (int c = lane; c < C; c += 32) {
    const float dn = dy[c] * w[c];
    s1 += dn;
    s2 += dn * (x[c] - mu) * rs;
  }
  const float m1 = warp_sum(s1) / C, m2 = warp_sum(s2) / C;
  float* dx = dinp + size_t(row) * C;
  for (int c = lane; c < C; c += 32) {
    const float xh = (x[c] - mu) * rs;
    dx[c] += rs * (dy[c] * w[c] - m1 - xh * m2);
  }
}

// What a column sum adds up: dout (a bias), dout and dout·x̂ (LayerNorm b and w), dout·x̂ (RMSNorm w).
enum class Cols { Bias, LayerNorm, RMSNorm };

// Stage 1: partial_b[split][c] = Σ dout and/or partial_w[split][c] = Σ dout·x̂ over this block's row
// slice. Block (32, 8): threadIdx.x = column within 32, threadIdx.y strides rows.
template <Cols kCols>
__global__ void column_partials_kernel(float* partial_b, float* partial_w, const float* dout, const float* inp,
                                       const float* mean, const float* rstd, int N, int C, int rows_per_split) {
  __shared__ float sb[8][33], sw[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_split, r1 = min(N, r0 + rows_per_split);
  constexpr bool kSumB = kCols != Cols::RMSNorm, kSumW = kCols != Cols::Bias;
  float acc_b = 0, acc_w = 0;
  if (c < C)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float d = dout[size_t(r) * C + c];
      if (kSumB) acc_b += d;
      if (kCols == Cols::LayerNorm) acc_w += d * (inp[size_t(r) * C + c] - mean[r]) * rstd[r];
      if (kCols == Cols::RMSNorm) acc_w += d * (inp[size_t(r) * C + c] * rstd[r]);
    }
  sb[threadIdx.y][threadIdx.x] = acc_b;
  sw[threadIdx.y][threadIdx.x] = acc_w;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float tb = 0, tw = 0;
    for (int k = 0; k < 8; ++k) tb += sb[k][threadIdx.x], tw += sw[k][threadIdx.x];
    if (kSumB) partial_b[size_t(blockIdx.y) * C + c] = tb;
    if (kSumW) partial_w[size_t(blockIdx.y) * C + c] = tw;
  }
}

// Stage 2: db[c] += Σ_split partial_b[split][c] (same for dw), in split order; db or dw may be null.
__global__ void column_finish_kernel(float* db, float* dw, const float* partial_b, const float* partial_w, int C,
                                     int splits) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float tb = 0, tw = 0;
  for (int k = 0; k < splits; ++k) {
    if (db) tb += partial_b[size_t(k) * C + c];
    if (dw) tw += partial_w[size_t(k) * C + c];
  }
  if (db) db[c] += tb;
  if (dw) dw[c] += tw;
}

int splits_for(int N) { return max(1, min(kMaxSplits, (N + 127) / 128)); }

template <Cols kCols>
void column_sums(float* db, float* dw, const float* dout, const float* inp, const float* mean, const float* rstd, int N,
                 int C, float* scratch, cudaStream_t s) {
  const int S = splits_for(N), rows = (N + S - 1) / S;
  float* pb = scratch;
  float* pw = scratch + size_t(S) * C;
  column_partials_kernel<kCols>
      <<<dim3((C + 31) / 32, S), dim3(32, 8), 0, s>>>(pb, pw, dout, inp, mean, rstd, N, C, rows);
  CAIRN_CUDA_LAUNCH_CHECK("column_partials");
  column_finish_kernel<<<(C + 255) / 256, 256, 0, s>>>(kCols != Cols::RMSNorm ? db : nullptr,
                                                       kCols != Cols::Bias ? dw : nullptr, pb, pw, C, S);
  CAIRN_CUDA_LAUNCH_CHECK("column_finish");
}

}  // namespace

size_t layernorm_scratch_floats(int N, int C) { return 2 * size_t(splits_for(N)) * C; }

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C, cudaStream_t s) {
  if (N == 0) return;
  layernorm_forward_kernel<<<(N + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, s>>>(out, mean, rstd,
                                                                                                   inp, w, b, N, C);
  CAIRN_CUDA_LAUNCH_CHECK("layernorm_forward");
}

void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t s) {
  if (N == 0) return;
  layernorm_backward_kernel<<<(N + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, s>>>(
      dinp, dout, inp, w, mean, rstd, N, C);
  CAIRN_CUDA_LAUNCH_CHECK("layernorm_backward");
  column_sums<Cols::LayerNorm>(db, dw, dout, inp, mean, rstd, N, C, scratch, s);
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps,
                     cudaStream_t s) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<(N + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, s>>>(out, rstd, inp, w, N,
                                                                                                   C, eps);
  CAIRN_CUDA_LAUNCH_CHECK("rmsnorm_forward");
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int C, float* scratch, cudaStream_t s) {
  if (N == 0) return;
  rmsnorm_backward_kernel<<<(N + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, s>>>(dinp, dout, inp, w,
                                                                                                    rstd, N, C);
  CAIRN_CUDA_LAUNCH_CHECK("rmsnorm_backward");
  column_sums<Cols::RMSNorm>(nullptr, dw, dout, inp, nullptr, rstd, N, C, scratch, s);
}

void column_sum_add(float* db, const float* dout, int N, int C, float* scratch, cudaStream_t s) {
  if (N == 0) return;
  column_sums<Cols::Bias>(db, nullptr, dout, nullptr, nullptr, nullptr, N, C, scratch, s);
}

}  // namespace cairn::cuda
