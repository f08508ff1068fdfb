// Flash attention forward (FlashAttention-2 style) and its launcher.
//
// Thread mapping: grid (query tiles, NH, B), kWarps·32 threads; a block owns kBM = 16·kMT·kWarps query
// rows of one (sequence, query head h), warp w the 16·kMT rows from q0 + 16·kMT·w. The K/V tiles of
// key/value head h / group (grouped-query attention; group = 1: multi-head), 64 keys each, stream
// through shared memory (cp.async, double buffered); each warp computes S = Q·Kᵀ for its rows with
// mma.sync m16n8k16 (bf16 in, fp32 accumulate), keeps the running max m and sum l, rescales O, and
// feeds P (bf16, straight from the accumulator registers) into O += P·V. Extra memory: lse only.
// Shared prefixes (Params::prefix_of): a query tile of a segment that continues a prefix walks the
// prefix's key tiles first (every key visible: only keys past the prefix's end are masked), then its
// own (causal) — one sequence of key tiles, one pipeline (the prefetch after the prefix's last tile is
// the first own one). The grid is unchanged: the prefix's queries are those of its own segment.
// This is the kPrefix = true instantiation; kPrefix = false (prefix_of null) has no prefix tiles.
// Precision: S, the softmax statistics, O and lse are fp32; bf16 only as MMA operands.
// Exponentials use exp2 with the scale folded in: scale_log2 = log2(e)/√HS.
#include "kernels/attention_common.cuh"

namespace cairn::cuda::attn {
namespace {

// The forward layout of a tiling at padded head size kHS_, read by the kernel and its launcher.
// Shared memory (bf16, rows of kLD elements): sQ [kBM][kLD] | sK [kKVBufs][kBN][kLD] | sV [kKVBufs][kBN][kLD].
template <class Tiling, int kHS_>
struct FlashFwd {
  static constexpr int kHS = kHS_, kWarps = Tiling::kFwdWarps, kMT = Tiling::kFwdMT, kThreads = 32 * kWarps;
  static constexpr int kRows = 16 * kMT;      // query rows per warp
  static constexpr int kBM = kRows * kWarps;  // query rows per block
  static constexpr int kBN = 64;              // keys per K/V tile
  static constexpr int kLD = tile_pitch(kHS), kKVBufs = 2;
  static constexpr int kTileKV = kBN * kLD;  // elements of one K (or V) buffer
  static constexpr int kOffQ = 0, kOffK = kOffQ + kBM * kLD, kOffV = kOffK + kKVBufs * kTileKV;
  static constexpr size_t kSmemBytes = size_t(kOffV + kKVBufs * kTileKV) * sizeof(bf16);
};

// Key tile j of a query tile: the shared prefix's tiles (rows from the prefix's first) come first, then
// the segment's own (causal when the kernel is). Keys kbase .. kbase + kBN − 1 of a range of klen keys
// whose first is row base + row0 (base: the row the kernel's K, V pointers start at).
// Without prefixes (n_pre = 0, pre = {0, 0}, base = seq0) this folds to {0, j·kBN, len, true}.
struct KeyTile {
  int row0, kbase, klen;
  bool own;
};
__device__ __forceinline__ KeyTile key_tile(int j, int n_pre, int kBN, PrefixRows pre, int base, int seq0, int len) {
  return j < n_pre ? KeyTile{pre.row0 - base, j * kBN, pre.len, false}
                   : KeyTile{seq0 - base, (j - n_pre) * kBN, len, true};
}

// With kMT = 2 every K/V fragment read from shared memory feeds two MMAs.
// kPrefix = false: no shared prefixes (Params::prefix_of null) — the plain path, none of their bookkeeping.
template <class Tr, bool kCausal, bool kPrefix, class T>
__global__ void __launch_bounds__(Tr::kThreads) flash_fwd_kernel(Params p) {
  constexpr int kHS = Tr::kHS, kMT = Tr::kMT, kRows = Tr::kRows, kBM = Tr::kBM, kBN = Tr::kBN, kLD = Tr::kLD;
  constexpr int kThreads = Tr::kThreads;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem) + Tr::kOffQ;  // [kBM][kLD]
  bf16* sK = reinterpret_cast<bf16*>(smem) + Tr::kOffK;  // [kKVBufs][kBN][kLD]
  bf16* sV = reinterpret_cast<bf16*>(smem) + Tr::kOffV;  // [kKVBufs][kBN][kLD]

  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int n_qtiles = (len + kBM - 1) / kBM;
  const int qt = n_qtiles - 1 - static_cast<int>(blockIdx.x);  // longest (causal) tiles launch first
  if (qt < 0) return;
  const int q0 = qt * kBM;
  const int kv_end = kCausal ? min(len, q0 + kBM) : len;
  const PrefixRows pre = prefix_rows<kPrefix>(p, b);
  const int n_pre = kPrefix ? (pre.len + kBN - 1) / kBN : 0;  // the shared prefix's key tiles (0: none)
  const int n_ktiles = n_pre + (kv_end + kBN - 1) / kBN;

  const T* Q = static_cast<const T*>(p.q) + (seq0 + q0) * p.sq + h * p.hs;
  const int kvh = kv_head(p, h);
  const int base = kPrefix ? 0 : seq0;  // K, V start at row base (+ (row − base)·sk)
  const T* K = static_cast<const T*>(p.k) + base * p.sk + kvh * p.hs;
  const T* V = static_cast<const T*>(p.v) + base * p.sv + kvh * p.hs;
  auto load_kv = [&](int j, int buf) {  // key tile j into K/V buffer buf
    const KeyTile kt = key_tile(j, n_pre, kBN, pre, base, seq0, len);
    const int row = kt.row0 + kt.kbase;
    load_tile<kBN, kHS, kThreads>(sK + buf * Tr::kTileKV, K + row * p.sk, p.sk, kt.klen - kt.kbase, p.hs, p.vec);
    load_tile<kBN, kHS, kThreads>(sV + buf * Tr::kTileKV, V + row * p.sv, p.sv, kt.klen - kt.kbase, p.hs, p.vec);
  };
  load_tile<kBM, kHS, kThreads>(sQ, Q, p.sq, len - q0, p.hs, p.vec);
  load_kv(0, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int mi = lane / 8, r8 = lane % 8;  // ldmatrix: this lane addresses row r8 of matrix mi
  const int wrow = q0 + warp * kRows;      // the warp's first query row
  float o[kMT][kHS / 8][4] = {};
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

  for (int j = 0; j < n_ktiles; ++j) {
    const int buf = j & 1;
    if (j + 1 < n_ktiles) load_kv(j + 1, buf ^ 1);  // prefetch the next K/V tile into the other buffer
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch just issued has landed
    __syncthreads();
    const bf16* sKb = sK + buf * Tr::kTileKV;
    const bf16* sVb = sV + buf * Tr::kTileKV;

    // S = Q·Kᵀ for the warp's rows × 64 keys
    float s[kMT][kBN / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < kHS / 16; ++kk) {
      uint32_t qa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
        ldmatrix_x4(qa[mt], sQ + (warp * kRows + mt * 16 + lane % 16) * kLD + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        uint32_t r[4];
        ldmatrix_b<false>(r, sKb + (np * 16 + (mi >> 1) * 8 + r8) * kLD + kk * 16 + (mi & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) mma_b16(s[mt][2 * np], s[mt][2 * np + 1], qa[mt], r);
      }
    }
    // scale into log2 units; mask keys past the end of their range and (causal, own keys) after the query
    const KeyTile kt = key_tile(j, n_pre, kBN, pre, base, seq0, len);
    const int kbase = kt.kbase, klen = kt.klen;
    const bool causal = kCausal && kt.own;
    const bool edge = kbase + kBN > klen || (causal && kbase + kBN - 1 > wrow);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[mt][nt][e] * p.scale_log2;
          if (edge) {
            const int key = kbase + nt * 8 + 2 * t + (e & 1), row = wrow + mt * 16 + g + (e >> 1) * 8;
            if (key >= klen || (causal && key > row)) x = -INFINITY;
          }
          s[mt][nt][e] = x;
        }
    // online softmax for the thread's rows (a row is spread over the 4 threads of a quad)
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kBN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hr], s[mt][nt][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
        const float m_new = fmaxf(m[mt][hr], mx);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a fully masked row stays at zero
        const float alpha = exp2f(m[mt][hr] - m_use);
        m[mt][hr] = m_new;
        l[mt][hr] *= alpha;
#pragma unroll
        for (int dt = 0; dt < kHS / 8; ++dt) o[mt][dt][2 * hr] *= alpha, o[mt][dt][2 * hr + 1] *= alpha;
#pragma unroll
        for (int nt = 0; nt < kBN / 8; ++nt) {
          const float p0 = exp2f(s[mt][nt][2 * hr] - m_use), p1 = exp2f(s[mt][nt][2 * hr + 1] - m_use);
          s[mt][nt][2 * hr] = p0, s[mt][nt][2 * hr + 1] = p1;
          l[mt][hr] += p0 + p1;
        }
      }
    // O += P·V: the accumulator layout of S is the A-operand layout of P
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) acc_to_a(a[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < kHS / 16; ++dp) {
        uint32_t r[4];
        ldmatrix_b<true>(r, sVb + (kk * 16 + (mi & 1) * 8 + r8) * kLD + dp * 16 + (mi >> 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) mma_b16(o[mt][2 * dp], o[mt][2 * dp + 1], a[mt], r);
      }
    }
    __syncthreads();  // this buffer is the target of the next iteration's prefetch
  }

  T* O = static_cast<T*>(p.o);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float L = l[mt][hr];
      L += __shfl_xor_sync(kFull, L, 1);
      L += __shfl_xor_sync(kFull, L, 2);
      const int row = wrow + mt * 16 + g + hr * 8;
      if (row >= len) continue;
      const float inv = L > 0 ? 1.0f / L : 0.0f;
      T* orow = O + (seq0 + row) * p.so + h * p.hs;
#pragma unroll
      for (int dt = 0; dt < kHS / 8; ++dt) {
        const int col = dt * 8 + 2 * t;
        st2(orow + col, o[mt][dt][2 * hr] * inv, o[mt][dt][2 * hr + 1] * inv, p.hs - col);
      }
      if (t == 0) p.lse[size_t(seq0 + row) * p.NH + h] = L > 0 ? (m[mt][hr] + log2f(L)) * kLn2 : -INFINITY;
    }
}

template <class Tr, bool kCausal, bool kPrefix, class T>
void launch(const AttnShape& s, const Params& p, cudaStream_t st) {
  auto kernel = flash_fwd_kernel<Tr, kCausal, kPrefix, T>;
  static PerDevice<cudaError_t> opt_in;
  opt_in_smem(opt_in, kernel, Tr::kSmemBytes, "attention forward shared memory");
  const dim3 grid((s.max_len + Tr::kBM - 1) / Tr::kBM, s.NH, s.B);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, st>>>(p);
  CAIRN_CUDA_LAUNCH_CHECK("flash attention forward");
}

}  // namespace

template <class T>
void flash_forward(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st) {
  dispatch_flash<FlashFwd>(k, s, [&](auto layout, auto causal, auto prefix) {
    launch<typename decltype(layout)::type, decltype(causal)::value, decltype(prefix)::value, T>(s, p, st);
  });
}
template void flash_forward<float>(AttnKernel, const AttnShape&, const Params&, cudaStream_t);
template void flash_forward<bf16>(AttnKernel, const AttnShape&, const Params&, cudaStream_t);

}  // namespace cairn::cuda::attn
