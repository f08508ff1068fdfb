// Attention of the last query of each sequence only (fp32), forward and backward, and their
// launchers, grouped-query (query head h reads key/value head h / G, G = NH / NKV): out[B, NH·HS],
// lse[B, NH]; the backward assigns all of dqkv (zero where the last query does not reach). q, k, v
// are read from the model's qkv rows [q heads (NH·HS) | k heads (NKV·HS) | v heads (NKV·HS)].
//
// Thread mapping: kLastWarps warps per block; warp w takes keys w, w + kLastWarps, ...; lane c holds
// columns c, c + 32, ... (kLastCols registers for head sizes ≤ kMaxHS). Forward: grid (B, NH), one
// block per (sequence, query head). Backward: grid (B, NKV), one block per (sequence, key/value head),
// which takes the G query heads of its group in turn: key j's dk_j, dv_j sum the heads' terms in place
// (always the same thread for a given (j, column), so no atomics and a fixed order); dq of each head
// is its own. The warps' partial results meet in shared memory and warp 0 combines them in a fixed
// order.
// Shared prefixes (prefix_of, as AttnShape::prefix_of): the query of a segment that continues a prefix
// reads the prefix's rows and then all of its own — key j of P + len is prefix row j (j < P), then own
// row j − P, warp-strided as above. Backward: the block of a segment that opens a group (the prefix)
// does the whole group — its own query, then each continuing segment's, in order — and the blocks of
// continuing segments return at once. A prefix row j is key j of every segment of the group, so it is
// always the same thread that adds into its dk, dv: no atomics, a fixed order, as without prefixes.
// Precision: fp32 loads and fp32 accumulation throughout.
#include "kernels/attention_common.cuh"

namespace cairn::cuda {
namespace {

using attn::kMaxHS;

constexpr int kLastWarps = 4;
constexpr int kLastCols = kMaxHS / 32;

void check_heads(int NH, int NKV) {
  if (NH < 1 || NKV < 1 || NH % NKV)
    throw std::invalid_argument("CUDA last-query attention: the query heads must be a multiple of the key/value heads");
}

__device__ float dot_lanes(const float* a, const float* x, int hs) {
  float s = 0;
  for (int c = threadIdx.x % 32, i = 0; i < kLastCols; ++i, c += 32)
    if (c < hs) s += a[i] * x[c];
  return warp_sum(s);
}

// Columns of the packed qkv row: its width W, and where query head h, key head g and value head g start.
struct QkvCols {
  long W, k0, v0, hs;
  __device__ QkvCols(int NH, int NKV, int hs_)
      : W(long(NH + 2 * NKV) * hs_), k0(long(NH) * hs_), v0(long(NH + NKV) * hs_), hs(hs_) {}
  __device__ long q(int h) const { return h * hs; }
  __device__ long k(int g) const { return k0 + g * hs; }
  __device__ long v(int g) const { return v0 + g * hs; }
};

// kPrefix = false: prefix_of is null (no shared prefixes) — the plain path, none of their bookkeeping.
template <bool kPrefix>
__global__ void last_fwd_kernel(float* out, float* lse, const float* qkv, const int32_t* cu, int NH, int NKV, int hs,
                                const int32_t* prefix_of) {
  __shared__ float s_m[kLastWarps], s_l[kLastWarps], s_acc[kLastWarps][kMaxHS];
  const int b = blockIdx.x, h = blockIdx.y, g = h / (NH / NKV), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int C = NH * hs;
  const QkvCols col(NH, NKV, hs);
  const int seq0 = cu[b], len = cu[b + 1] - seq0;
  const float scale = rsqrtf(static_cast<float>(hs));
  const float* q = qkv + size_t(seq0 + len - 1) * col.W + col.q(h);
  float qv[kLastCols], acc[kLastCols] = {};
  for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) qv[i] = c < hs ? q[c] : 0.0f;
  float m = -INFINITY, l = 0;
  const attn::PrefixRows pre = kPrefix ? attn::prefix_rows(cu, prefix_of, b) : attn::PrefixRows{0, 0};
  for (int j = warp; j < pre.len + len; j += kLastWarps) {
    const int row = j < pre.len ? pre.row0 + j : seq0 + j - pre.len;
    const float* k = qkv + size_t(row) * col.W + col.k(g);
    const float* v = qkv + size_t(row) * col.W + col.v(g);
    const float s = dot_lanes(qv, k, hs) * scale;
    const float m_new = fmaxf(m, s), alpha = __expf(m - m_new), pj = __expf(s - m_new);
    l = l * alpha + pj;
    for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) acc[i] = acc[i] * alpha + (c < hs ? pj * v[c] : 0.0f);
    m = m_new;
  }
  if (lane == 0) s_m[warp] = m, s_l[warp] = l;
  for (int i = 0; i < kLastCols; ++i) s_acc[warp][i * 32 + lane] = acc[i];
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

// dqkv was zeroed; for the last query q of each segment of the group and each query head h in the
// group of key/value head g, and every key j of the segment (its prefix's rows included):
//   p_j = exp(scale·q·k_j − lse),  ds_j = p_j(dout·v_j − dout·out)
//   dv_j += p_j·dout,  dk_j += scale·ds_j·q   (summed over the group's heads and segments)
//   dq = scale·Σ_j ds_j·k_j                   (head h's own)
template <bool kPrefix>
__global__ void last_bwd_kernel(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                                const int32_t* cu, int NH, int NKV, int hs, const int32_t* prefix_of, int B) {
  __shared__ float s_dq[kLastWarps][kMaxHS];
  const int first = blockIdx.x, g = blockIdx.y, G = NH / NKV, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (kPrefix && prefix_of[first] >= 0) return;  // done by the block of its group's prefix
  const int C = NH * hs;
  const QkvCols col(NH, NKV, hs);
  const float scale = rsqrtf(static_cast<float>(hs));
  // The last query of segment b, whose keys are the np rows of its prefix from row pre0, then its own.
  auto segment = [&](int b, int pre0, int np) {
    const int seq0 = cu[b], len = cu[b + 1] - seq0;
    const size_t qrow = size_t(seq0 + len - 1);
    for (int h = g * G; h < (g + 1) * G; ++h) {
      float qv[kLastCols], dov[kLastCols], dq[kLastCols] = {};
      float D = 0;
      for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
        qv[i] = c < hs ? qkv[qrow * col.W + col.q(h) + c] : 0.0f;
        dov[i] = c < hs ? dout[size_t(b) * C + h * hs + c] : 0.0f;
        D += c < hs ? dov[i] * out[size_t(b) * C + h * hs + c] : 0.0f;
      }
      D = warp_sum(D);
      const float L = lse[size_t(b) * NH + h];
      for (int j = warp; j < np + len; j += kLastWarps) {
        const size_t row = size_t(j < np ? pre0 + j : seq0 + j - np);
        const float* k = qkv + row * col.W + col.k(g);
        const float* v = qkv + row * col.W + col.v(g);
        const float pj = __expf(dot_lanes(qv, k, hs) * scale - L);
        const float ds = pj * (dot_lanes(dov, v, hs) - D);
        float* dk = dqkv + row * col.W + col.k(g);
        float* dv = dqkv + row * col.W + col.v(g);
        for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
          if (c >= hs) continue;
          dv[c] += pj * dov[i];
          dk[c] += scale * ds * qv[i];
          dq[i] += scale * ds * k[c];
        }
      }
      for (int i = 0; i < kLastCols; ++i) s_dq[warp][i * 32 + lane] = dq[i];
      __syncthreads();
      if (warp == 0)
        for (int i = 0, c = lane; i < kLastCols; ++i, c += 32) {
          if (c >= hs) continue;
          float a = 0;
          for (int w = 0; w < kLastWarps; ++w) a += s_dq[w][i * 32 + lane];
          dqkv[qrow * col.W + col.q(h) + c] = a;
        }
      __syncthreads();  // s_dq is rewritten for the next head
    }
  };
  if constexpr (kPrefix) {  // the group: the prefix (or a plain sequence), then each continuing segment
    const int pre0 = cu[first], P = cu[first + 1] - pre0;
    const int end = first + 1 + attn::n_continuations(prefix_of, B, first);
    for (int b = first; b < end; ++b) segment(b, pre0, b == first ? 0 : P);
  } else {
    segment(first, 0, 0);
  }
}

}  // namespace

void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu_seqlens,
                            const int32_t* prefix_of, int B, int NH, int NKV, int HS, cudaStream_t s) {
  attn::check_head_size(HS);
  check_heads(NH, NKV);
  if (B == 0) return;
  auto kernel = prefix_of ? last_fwd_kernel<true> : last_fwd_kernel<false>;
  kernel<<<dim3(B, NH), 32 * kLastWarps, 0, s>>>(out, lse, qkv, cu_seqlens, NH, NKV, HS, prefix_of);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention forward");
}

void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu_seqlens, const int32_t* prefix_of, int B, int N, int NH, int NKV,
                             int HS, cudaStream_t s) {
  attn::check_head_size(HS);
  check_heads(NH, NKV);
  check(cudaMemsetAsync(dqkv, 0, size_t(N) * (NH + 2 * NKV) * HS * sizeof(float), s), "last-query attention backward");
  if (B == 0) return;
  auto kernel = prefix_of ? last_bwd_kernel<true> : last_bwd_kernel<false>;
  kernel<<<dim3(B, NKV), 32 * kLastWarps, 0, s>>>(dqkv, dout, qkv, out, lse, cu_seqlens, NH, NKV, HS, prefix_of, B);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention backward");
}

}  // namespace cairn::cuda
