// Attention of the last query of each sequence only (fp32), forward and backward, and their
// launchers: out[B, NH·HS], lse[B, NH]; the backward assigns all of dqkv[N, 3C] (zero where the last
// query does not reach). q, k, v are read from the model's qkv[N, 3C].
//
// Thread mapping: grid (B, NH), kLastWarps warps per (sequence, head); warp w takes keys w,
// w + kLastWarps, ...; lane c holds columns c, c + 32, ... (kLastCols registers for head sizes ≤ kMaxHS).
// The warps' partial results meet in shared memory and warp 0 combines them in a fixed order.
// Precision: fp32 loads and fp32 accumulation throughout.
#include "kernels/attention_common.cuh"

namespace cairn::cuda {
namespace {

using attn::kMaxHS;

constexpr int kLastWarps = 4;
constexpr int kLastCols = kMaxHS / 32;

__device__ float dot_lanes(const float* a, const float* x, int hs) {
  float s = 0;
  for (int c = threadIdx.x % 32, i = 0; i < kLastCols; ++i, c += 32)
    if (c < hs) s += a[i] * x[c];
  return warp_sum(s);
}

__global__ void last_fwd_kernel(float* out, float* lse, const float* qkv, const int32_t* cu, int NH, int hs) {
  __shared__ float s_m[kLastWarps], s_l[kLastWarps], s_acc[kLastWarps][kMaxHS];
  const int b = blockIdx.x, h = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int C = NH * hs;
  const int seq0 = cu[b], len = cu[b + 1] - seq0;
  const float scale = rsqrtf(static_cast<float>(hs));
  const float* q = qkv + size_t(seq0 + len - 1) * 3 * C + h * hs;
  float qv[kLastCols], acc[kLastCols] = {};
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) qv[i] = c < hs ? q[c] : 0.0f;
  float m = -INFINITY, l = 0;
  for (int j = warp; j < len; j += kLastWarps) {
    const float* k = qkv + size_t(seq0 + j) * 3 * C + C + h * hs;
    const float* v = k + C;
    const float s = dot_lanes(qv, k, hs) * scale;
    const float m_new = fmaxf(m, s), alpha = __expf(m - m_new), pj = __expf(s - m_new);
    l = l * alpha + pj;
    for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) acc[i] = acc[i] * alpha + (c < hs ? pj * v[c] : 0.0f);
    m = m_new;
  }
  if (lane == 0) s_m[warp] = m, s_l[warp] = l;
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) s_acc[warp][i * 32 + lane] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float M = -INFINITY;
  for (int w = 0; w < kLastWarps; ++w) M = fmaxf(M, s_m[w]);
  float L = 0;
  for (int w = 0; w < kLastWarps; ++w) L += s_m[w] == -INFINITY ? 0.0f : s_l[w] * __expf(s_m[w] - M);
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
    if (c >= hs) continue;
    float a = 0;
    for (int w = 0; w < kLastWarps; ++w)
      if (s_m[w] != -INFINITY) a += s_acc[w][i * 32 + lane] * __expf(s_m[w] - M);
    out[size_t(b) * C + h * hs + c] = a / L;
  }
  if (lane == 0) lse[size_t(b) * NH + h] = M + logf(L);
}

// dqkv was zeroed; for the last query q and every key j of the sequence:
//   p_j = exp(scale·q·k_j − lse),  dv_j = p_j·dout,  ds_j = p_j(dout·v_j − dout·out),
//   dk_j = scale·ds_j·q,  dq = scale·Σ_j ds_j·k_j
__global__ void last_bwd_kernel(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                                const int32_t* cu, int NH, int hs) {
  __shared__ float s_dq[kLastWarps][kMaxHS];
  const int b = blockIdx.x, h = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int C = NH * hs;
  const int seq0 = cu[b], len = cu[b + 1] - seq0;
  const float scale = rsqrtf(static_cast<float>(hs));
  const size_t qrow = size_t(seq0 + len - 1);
  float qv[kLastCols], dov[kLastCols], dq[kLastCols] = {};
  float D = 0;
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
    qv[i] = c < hs ? qkv[qrow * 3 * C + h * hs + c] : 0.0f;
    dov[i] = c < hs ? dout[size_t(b) * C + h * hs + c] : 0.0f;
    D += c < hs ? dov[i] * out[size_t(b) * C + h * hs + c] : 0.0f;
  }
  D = warp_sum(D);
  const float L = lse[size_t(b) * NH + h];
  for (int j = warp; j < len; j += kLastWarps) {
    const size_t row = size_t(seq0 + j);
    const float* k = qkv + row * 3 * C + C + h * hs;
    const float* v = k + C;
    const float pj = __expf(dot_lanes(qv, k, hs) * scale - L);
    const float ds = pj * (dot_lanes(dov, v, hs) - D);
    float* dk = dqkv + row * 3 * C + C + h * hs;
    float* dv = dk + C;
    for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
      if (c >= hs) continue;
      dv[c] = pj * dov[i];
      dk[c] = scale * ds * qv[i];
      dq[i] += scale * ds * k[c];
    }
  }
  for (int i = 0; i < kLastCols; ++i) s_dq[warp][i * 32 + lane] = dq[i];
  __syncthreads();
  if (warp != 0) return;
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
    if (c >= hs) continue;
    float a = 0;
    for (int w = 0; w < kLastWarps; ++w) a += s_dq[w][i * 32 + lane];
    dqkv[qrow * 3 * C + h * hs + c] = a;
  }
}

}  // namespace

void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu_seqlens, int B, int NH,
                            int HS, cudaStream_t s) {
  attn::check_head_size(HS);
  if (B == 0) return;
  last_fwd_kernel<<<dim3(B, NH), 32 * kLastWarps, 0, s>>>(out, lse, qkv, cu_seqlens, NH, HS);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention forward");
}

void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu_seqlens, int B, int N, int NH, int HS, cudaStream_t s) {
  attn::check_head_size(HS);
  check(cudaMemsetAsync(dqkv, 0, size_t(N) * 3 * NH * HS * sizeof(float), s), "last-query attention backward");
  if (B == 0) return;
  last_bwd_kernel<<<dim3(B, NH), 32 * kLastWarps, 0, s>>>(dqkv, dout, qkv, out, lse, cu_seqlens, NH, HS);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention backward");
}

}  // namespace cairn::cuda
