// Naive reference attention kernels and their launchers: slow and obviously right, the reference the
// flash kernels are checked against on the device (tests/gpu, cairn bench attention --device cuda).
//
// Thread mapping: 128 threads a block; one thread per query row (forward, dQ: grid (ceil(max_len / 128),
// NH, B)) of one (sequence, query head h), reading key/value head h / group; or per key row (dK, dV:
// grid (ceil(max_len / 128), NKV, B)) of one (sequence, key/value head g), which walks the queries of
// every query head of its group (dK_g, dV_g = sums over the group). Rows of up to kMaxHS columns in
// registers (spilled to the stack).
// Shared prefixes (Params::prefix_of): a query row of a segment that continues a prefix walks the
// prefix's key rows (all visible) before its own (causal); a key row of a segment that opens a group
// walks, for each query head, its own segment's queries (causal) and then every query of each segment
// continuing it (unmasked), so the prefix's dK, dV are written once, by the thread owning the row, and
// summed in a fixed order. A continuing segment's key rows are read by its own queries only.
// Precision: fp32 loads (bf16 widened) and fp32 accumulation throughout; online softmax in the forward,
// the backward recomputes P from the saved lse (D = rowsum(dO∘O) comes from the pre-pass).
#include "kernels/attention_common.cuh"

namespace cairn::cuda::attn {
namespace {

template <bool kCausal, bool kPrefix, class T>
__global__ void naive_fwd_kernel(Params p) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= len) return;
  const T* q = static_cast<const T*>(p.q) + (seq0 + i) * p.sq + h * p.hs;
  const int kvh = kv_head(p, h);
  float qv[kMaxHS], acc[kMaxHS];
  for (int c = 0; c < p.hs; ++c) qv[c] = ld(q + c), acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  auto key = [&](int row) {  // online softmax over key row `row`
    const T* k = static_cast<const T*>(p.k) + row * p.sk + kvh * p.hs;
    const T* v = static_cast<const T*>(p.v) + row * p.sv + kvh * p.hs;
    float s = 0;
    for (int c = 0; c < p.hs; ++c) s += qv[c] * ld(k + c);
    s *= p.scale;
    const float m_new = fmaxf(m, s), alpha = __expf(m - m_new), pj = __expf(s - m_new);
    l = l * alpha + pj;
    for (int c = 0; c < p.hs; ++c) acc[c] = acc[c] * alpha + pj * ld(v + c);
    m = m_new;
  };
  const PrefixRows pre = prefix_rows<kPrefix>(p, b);
  for (int j = 0; j < pre.len; ++j) key(pre.row0 + j);
  const int end = kCausal ? i + 1 : len;
  for (int j = 0; j < end; ++j) key(seq0 + j);
  T* o = static_cast<T*>(p.o) + (seq0 + i) * p.so + h * p.hs;
  for (int c = 0; c < p.hs; ++c) st(o + c, acc[c] / l);
  p.lse[size_t(seq0 + i) * p.NH + h] = m + logf(l);
}

// dQ_i = scale·Σ_j dS_ij·k_j   (thread per query row)
template <bool kCausal, bool kPrefix, class T>
__global__ void naive_bwd_dq_kernel(Params p) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= len) return;
  const size_t row = seq0 + i;
  const T* q = static_cast<const T*>(p.q) + row * p.sq + h * p.hs;
  const T* dout = static_cast<const T*>(p.dout) + row * p.sdo + h * p.hs;
  float qv[kMaxHS], dov[kMaxHS], acc[kMaxHS];
  for (int c = 0; c < p.hs; ++c) qv[c] = ld(q + c), dov[c] = ld(dout + c), acc[c] = 0.0f;
  const float lse = p.lse[row * p.NH + h], D = p.D[row * p.NH + h];
  const int kvh = kv_head(p, h);
  auto key = [&](int krow) {  // the term of key row krow
    const T* k = static_cast<const T*>(p.k) + krow * p.sk + kvh * p.hs;
    const T* v = static_cast<const T*>(p.v) + krow * p.sv + kvh * p.hs;
    float s = 0, dp = 0;
    for (int c = 0; c < p.hs; ++c) s += qv[c] * ld(k + c), dp += dov[c] * ld(v + c);
    const float pij = __expf(s * p.scale - lse), ds = pij * (dp - D);
    for (int c = 0; c < p.hs; ++c) acc[c] += ds * ld(k + c);
  };
  const PrefixRows pre = prefix_rows<kPrefix>(p, b);
  for (int j = 0; j < pre.len; ++j) key(pre.row0 + j);
  const int end = kCausal ? i + 1 : len;
  for (int j = 0; j < end; ++j) key(seq0 + j);
  T* dq = static_cast<T*>(p.dq) + row * p.sdq + h * p.hs;
  for (int c = 0; c < p.hs; ++c) st(dq + c, acc[c] * p.scale);
}

// dV_j = Σ_h Σ_i P^h_ij·dO^h_i,  dK_j = scale·Σ_h Σ_i dS^h_ij·q^h_i   (thread per key row of key/value
// head g; h over the query heads of its group, i over the queries that read key j: its own segment's,
// then those of every segment continuing it)
template <bool kCausal, bool kPrefix, class T>
__global__ void naive_bwd_dkv_kernel(Params p) {
  const int b = blockIdx.z, g = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= len) return;
  const size_t row = seq0 + j;
  const T* k = static_cast<const T*>(p.k) + row * p.sk + g * p.hs;
  const T* v = static_cast<const T*>(p.v) + row * p.sv + g * p.hs;
  float kv[kMaxHS], vv[kMaxHS], dk[kMaxHS], dv[kMaxHS];
  for (int c = 0; c < p.hs; ++c) kv[c] = ld(k + c), vv[c] = ld(v + c), dk[c] = dv[c] = 0.0f;
  auto query = [&](int h, size_t qrow) {  // the term of query row qrow of head h
    const T* q = static_cast<const T*>(p.q) + qrow * p.sq + h * p.hs;
    const T* dout = static_cast<const T*>(p.dout) + qrow * p.sdo + h * p.hs;
    float s = 0, dp = 0;
    for (int c = 0; c < p.hs; ++c) s += ld(q + c) * kv[c], dp += ld(dout + c) * vv[c];
    const float pij = __expf(s * p.scale - p.lse[qrow * p.NH + h]), ds = pij * (dp - p.D[qrow * p.NH + h]);
    for (int c = 0; c < p.hs; ++c) dv[c] += pij * ld(dout + c), dk[c] += ds * ld(q + c);
  };
  const int n_cont = n_continuations<kPrefix>(p, b);
  for (int h = g * p.group; h < (g + 1) * p.group; ++h) {
    for (int i = kCausal ? j : 0; i < len; ++i) query(h, seq0 + i);
    for (int s = b + 1; s <= b + n_cont; ++s)  // key j is their shared prefix: every query reads it
      for (int r = p.cu[s]; r < p.cu[s + 1]; ++r) query(h, r);
  }
  T* dkp = static_cast<T*>(p.dk) + row * p.sdk + g * p.hs;
  T* dvp = static_cast<T*>(p.dv) + row * p.sdv + g * p.hs;
  for (int c = 0; c < p.hs; ++c) st(dkp + c, dk[c] * p.scale), st(dvp + c, dv[c]);
}

constexpr int kThreads = 128;

// heads: NH (per query head) or NKV (per key/value head)
dim3 grid_of(const AttnShape& s, int heads) { return dim3((s.max_len + kThreads - 1) / kThreads, heads, s.B); }

}  // namespace

template <class T>
void naive_forward(const AttnShape& s, const Params& p, cudaStream_t st) {
  dispatch_prefix(s, [&](auto prefix) {
    constexpr bool kPrefix = decltype(prefix)::value;
    if (s.causal) naive_fwd_kernel<true, kPrefix, T><<<grid_of(s, s.NH), kThreads, 0, st>>>(p);
    else naive_fwd_kernel<false, kPrefix, T><<<grid_of(s, s.NH), kThreads, 0, st>>>(p);
  });
  CAIRN_CUDA_LAUNCH_CHECK("naive attention forward");
}

template <class T>
void naive_backward(const AttnShape& s, const Params& p, cudaStream_t st) {
  dispatch_prefix(s, [&](auto prefix) {
    constexpr bool kPrefix = decltype(prefix)::value;
    if (s.causal) {
      naive_bwd_dq_kernel<true, kPrefix, T><<<grid_of(s, s.NH), kThreads, 0, st>>>(p);
      naive_bwd_dkv_kernel<true, kPrefix, T><<<grid_of(s, s.NKV), kThreads, 0, st>>>(p);
    } else {
      naive_bwd_dq_kernel<false, kPrefix, T><<<grid_of(s, s.NH), kThreads, 0, st>>>(p);
      naive_bwd_dkv_kernel<false, kPrefix, T><<<grid_of(s, s.NKV), kThreads, 0, st>>>(p);
    }
  });
  CAIRN_CUDA_LAUNCH_CHECK("naive attention backward");
}

template void naive_forward<float>(const AttnShape&, const Params&, cudaStream_t);
template void naive_forward<bf16>(const AttnShape&, const Params&, cudaStream_t);
template void naive_backward<float>(const AttnShape&, const Params&, cudaStream_t);
template void naive_backward<bf16>(const AttnShape&, const Params&, cudaStream_t);

}  // namespace cairn::cuda::attn
