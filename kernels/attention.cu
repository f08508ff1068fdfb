// Scaled dot-product attention on packed variable-length sequences: the GPU ladder.
//
//   Naive  one thread per query row (forward, dQ) or key row (dK, dV); fp32 loads and accumulation,
//          online softmax. Slow and obviously right: the reference the flash kernels are checked
//          against on the device (tests/gpu, cairn bench attention --device cuda).
//   Flash  FlashAttention-2 style. Forward: a block of kWarps warps owns 16·kWarps query rows of one
//          (sequence, head); K/V tiles of 64 keys stream through shared memory (cp.async, double
//          buffered); each warp computes S = Q·Kᵀ for its 16 rows with mma.sync m16n8k16 (bf16 in,
//          fp32 accumulate), keeps the running max m and sum l, rescales O, and feeds P (bf16,
//          straight from the accumulator registers) into O += P·V. Extra memory: lse only.
//          Backward: a block of 4 warps owns 64 keys (16 per warp) and walks the query tiles,
//          recomputing P from the saved lse:
//            Sᵀ = K·Qᵀ,  Pᵀ = exp(scale·Sᵀ − lse),  dPᵀ = V·dOᵀ,  dSᵀ = Pᵀ∘(dPᵀ − D),  D = rowsum(dO∘O)
//            dV += Pᵀ·dO,  dK += scale·dSᵀ·Q   (registers, written once at the end)
//            dQ += scale·dS·K                  (dSᵀ staged in shared memory; fp32 atomics into a workspace)
//          Workspace: dQ accumulator [N, NH·HS] + D [N, NH], fp32.
//
// Inputs are fp32 (the model's qkv) or bf16 (the benchmark); fp32 is rounded to bf16 when a tile is
// staged in shared memory. Softmax statistics, accumulators, lse and dQ are fp32 throughout.
// Exponentials use exp2 with the scale folded in: scale_log2 = log2(e)/√HS.
// Head sizes up to 128 run on tiles padded to 32, 64 or 128 columns (zero-filled).
#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

template <class T>
__device__ __forceinline__ float ld(const T* p) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(*p);
  else return *p;
}
template <class T>
__device__ __forceinline__ void st(T* p, float v) {
  if constexpr (std::is_same_v<T, bf16>) *p = __float2bfloat16(v);
  else *p = v;
}
// Stores two adjacent columns; `room` = columns left in the row (the tile may be padded past HS).
template <class T>
__device__ __forceinline__ void st2(T* p, float a, float b, int room) {
  if (room > 0) st(p, a);
  if (room > 1) st(p + 1, b);
}

struct Params {
  const void *q, *k, *v, *out, *dout;
  long sq, sk, sv, so, sdo;
  void *o, *dq, *dk, *dv;
  long sdq, sdk, sdv;
  float* lse;
  float* dq_acc;  // [N, NH·hs]
  float* D;       // [N, NH]
  const int32_t* cu;
  int NH, hs;
  float scale, scale_log2;
  bool vec;  // fp32 rows may be read as float4
};

// Stages a tile of kRows rows × kHS columns (row-major, `stride` elements between rows) into shared
// memory as bf16 with rows of kHS + 8 elements (the pad keeps ldmatrix free of bank conflicts).
// Rows ≥ nrows and columns ≥ hs are zero. bf16 sources go through cp.async (caller commits/waits).
template <int kRows, int kHS, int kThreads, class T>
__device__ __forceinline__ void load_tile(bf16* dst, const T* src, long stride, int nrows, int hs, bool vec) {
  constexpr int kChunks = kHS / 8, kLD = kHS + 8;
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    bf16* d = dst + r * kLD + col;
    if constexpr (std::is_same_v<T, bf16>) {
      const bool ok = r < nrows && col < hs;
      cp_async_16(d, ok ? src + r * stride + col : src, ok ? 16 : 0);
    } else {
      float f[8];
      if (r < nrows && vec && col + 8 <= hs) {
        const float4* s4 = reinterpret_cast<const float4*>(src + r * stride + col);
        const float4 a = s4[0], b = s4[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = (r < nrows && col + e < hs) ? src[r * stride + col + e] : 0.0f;
      }
      *reinterpret_cast<uint4*>(d) =
          make_uint4(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]), pack_bf16(f[4], f[5]), pack_bf16(f[6], f[7]));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Flash forward. Grid (query tiles, NH, B), kWarps·32 threads; warp w owns 16·kMT query rows from
// q0 + 16·kMT·w. With kMT = 2 every K/V fragment read from shared memory feeds two MMAs.
template <int kHS, int kWarps, int kMT, bool kCausal, class T>
__global__ void __launch_bounds__(kWarps * 32) flash_fwd_kernel(Params p) {
  constexpr int kRows = 16 * kMT, kBM = kRows * kWarps, kBN = 64, kLD = kHS + 8, kThreads = kWarps * 32;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [kBM][kLD]
  bf16* sK = sQ + kBM * kLD;                 // [2][kBN][kLD]
  bf16* sV = sK + 2 * kBN * kLD;             // [2][kBN][kLD]

  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int n_qtiles = (len + kBM - 1) / kBM;
  const int qt = n_qtiles - 1 - static_cast<int>(blockIdx.x);  // longest (causal) tiles launch first
  if (qt < 0) return;
  const int q0 = qt * kBM;
  const int kv_end = kCausal ? min(len, q0 + kBM) : len;
  const int n_ktiles = (kv_end + kBN - 1) / kBN;

  const T* Q = static_cast<const T*>(p.q) + (seq0 + q0) * p.sq + h * p.hs;
  const T* K = static_cast<const T*>(p.k) + seq0 * p.sk + h * p.hs;
  const T* V = static_cast<const T*>(p.v) + seq0 * p.sv + h * p.hs;
  load_tile<kBM, kHS, kThreads>(sQ, Q, p.sq, len - q0, p.hs, p.vec);
  load_tile<kBN, kHS, kThreads>(sK, K, p.sk, len, p.hs, p.vec);
  load_tile<kBN, kHS, kThreads>(sV, V, p.sv, len, p.hs, p.vec);
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
    if (j + 1 < n_ktiles) {  // prefetch the next K/V tile into the other buffer
      const int kn = (j + 1) * kBN;
      load_tile<kBN, kHS, kThreads>(sK + (buf ^ 1) * kBN * kLD, K + kn * p.sk, p.sk, len - kn, p.hs, p.vec);
      load_tile<kBN, kHS, kThreads>(sV + (buf ^ 1) * kBN * kLD, V + kn * p.sv, p.sv, len - kn, p.hs, p.vec);
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch just issued has landed
    __syncthreads();
    const bf16* sKb = sK + buf * kBN * kLD;
    const bf16* sVb = sV + buf * kBN * kLD;

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
        ldmatrix_x4(r, sKb + (np * 16 + (mi >> 1) * 8 + r8) * kLD + kk * 16 + (mi & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_bf16(s[mt][2 * np], qa[mt], r[0], r[1]);
          mma_bf16(s[mt][2 * np + 1], qa[mt], r[2], r[3]);
        }
      }
    }
    // scale into log2 units; mask keys past the end and (causal) after the query
    const int kbase = j * kBN;
    const bool edge = kbase + kBN > len || (kCausal && kbase + kBN - 1 > wrow);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[mt][nt][e] * p.scale_log2;
          if (edge) {
            const int key = kbase + nt * 8 + 2 * t + (e & 1), row = wrow + mt * 16 + g + (e >> 1) * 8;
            if (key >= len || (kCausal && key > row)) x = -INFINITY;
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
        ldmatrix_x4_trans(r, sVb + (kk * 16 + (mi & 1) * 8 + r8) * kLD + dp * 16 + (mi >> 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_bf16(o[mt][2 * dp], a[mt], r[0], r[1]);
          mma_bf16(o[mt][2 * dp + 1], a[mt], r[2], r[3]);
        }
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

// ------------------------------------------------------------------------------------------------
// Backward pre-pass: D[n, h] = Σ_c dO·O, and the dQ accumulator zeroed. One warp per (row, head).
template <class T>
__global__ void bwd_preprocess_kernel(Params p, int N) {
  const long wid = (blockIdx.x * long(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (wid >= long(N) * p.NH) return;
  const int row = static_cast<int>(wid / p.NH), h = static_cast<int>(wid % p.NH);
  const T* o = static_cast<const T*>(p.out) + row * p.so + h * p.hs;
  const T* d = static_cast<const T*>(p.dout) + row * p.sdo + h * p.hs;
  float acc = 0;
  for (int c = lane; c < p.hs; c += 32) acc += ld(o + c) * ld(d + c);
  acc = warp_sum(acc);
  if (lane == 0) p.D[wid] = acc;
  if (p.dq_acc)
    for (int c = lane; c < p.hs; c += 32) p.dq_acc[size_t(row) * p.NH * p.hs + h * p.hs + c] = 0.0f;
}

// Backward post-pass: dq (T) = dQ accumulator.
template <class T>
__global__ void bwd_write_dq_kernel(Params p, int N) {
  const size_t n = size_t(N) * p.NH * p.hs;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const size_t row = i / (p.NH * p.hs), col = i % (p.NH * p.hs);
    st(static_cast<T*>(p.dq) + row * p.sdq + col, p.dq_acc[i]);
  }
}

// Flash backward. Grid (key tiles of 16·kWarps keys, NH, B), kWarps·32 threads; warp w owns keys
// k0 + 16w .. k0 + 16w + 15. The dQ product is split over all warps: (16-row tile, column chunk) pairs.
template <int kHS, int kBMq, int kWarps, bool kCausal, class T>
__global__ void __launch_bounds__(kWarps * 32) flash_bwd_kernel(Params p) {
  constexpr int kBN = 16 * kWarps, kLD = kHS + 8, kLDS = kBMq + 8, kThreads = kWarps * 32;
  constexpr int kChunk = (kHS * (kBMq / 16) / kWarps) < 16 ? 16 : (kHS * (kBMq / 16) / kWarps);  // dQ columns per item
  constexpr int kChunks = kHS / kChunk, kItems = (kBMq / 16) * kChunks;
  static_assert(kChunk % 16 == 0 && kHS % kChunk == 0, "dQ column chunks are whole 16-column MMA tiles");
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);  // [kBN][kLD]
  bf16* sV = sK + kBN * kLD;                 // [kBN][kLD]
  bf16* sQ2 = sV + kBN * kLD;                // [2][kBMq][kLD]  (double buffered: the next tile streams in)
  bf16* sdO2 = sQ2 + 2 * kBMq * kLD;         // [2][kBMq][kLD]
  bf16* sdS = sdO2 + 2 * kBMq * kLD;         // [kBN][kLDS]: dSᵀ, keys × queries
  float* sL = reinterpret_cast<float*>(sdS + kBN * kLDS);  // [kBMq] lse·log2(e)
  float* sD = sL + kBMq;                                   // [kBMq]

  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int k0 = blockIdx.x * kBN;
  if (k0 >= len) return;
  const T* Q = static_cast<const T*>(p.q) + seq0 * p.sq + h * p.hs;
  const T* dO = static_cast<const T*>(p.dout) + seq0 * p.sdo + h * p.hs;
  const int qt_begin = kCausal ? k0 / kBMq : 0, qt_end = (len + kBMq - 1) / kBMq;
  load_tile<kBN, kHS, kThreads>(sK, static_cast<const T*>(p.k) + (seq0 + k0) * p.sk + h * p.hs, p.sk, len - k0, p.hs, p.vec);
  load_tile<kBN, kHS, kThreads>(sV, static_cast<const T*>(p.v) + (seq0 + k0) * p.sv + h * p.hs, p.sv, len - k0, p.hs, p.vec);
  load_tile<kBMq, kHS, kThreads>(sQ2, Q + qt_begin * kBMq * p.sq, p.sq, len - qt_begin * kBMq, p.hs, p.vec);
  load_tile<kBMq, kHS, kThreads>(sdO2, dO + qt_begin * kBMq * p.sdo, p.sdo, len - qt_begin * kBMq, p.hs, p.vec);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int mi = lane / 8, r8 = lane % 8;
  float dk[kHS / 8][4] = {}, dv[kHS / 8][4] = {};
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0, key0 + 8

  for (int qt = qt_begin; qt < qt_end; ++qt) {
    const int q0 = qt * kBMq, buf = (qt - qt_begin) & 1;
    if (qt + 1 < qt_end) {  // prefetch the next query tile into the other buffer
      const int qn = q0 + kBMq;
      load_tile<kBMq, kHS, kThreads>(sQ2 + (buf ^ 1) * kBMq * kLD, Q + qn * p.sq, p.sq, len - qn, p.hs, p.vec);
      load_tile<kBMq, kHS, kThreads>(sdO2 + (buf ^ 1) * kBMq * kLD, dO + qn * p.sdo, p.sdo, len - qn, p.hs, p.vec);
    }
    cp_async_commit();
    for (int i = threadIdx.x; i < kBMq; i += kThreads) {
      const bool ok = q0 + i < len;
      sL[i] = ok ? p.lse[size_t(seq0 + q0 + i) * p.NH + h] * kLog2e : 0.0f;
      sD[i] = ok ? p.D[size_t(seq0 + q0 + i) * p.NH + h] : 0.0f;
    }
    cp_async_wait<1>();  // this tile (and K, V) have landed; the prefetch may still be in flight
    __syncthreads();
    const bf16* sQ = sQ2 + buf * kBMq * kLD;
    const bf16* sdO = sdO2 + buf * kBMq * kLD;

    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: 16 keys × kBMq queries per warp
    float sT[kBMq / 8][4] = {}, dpT[kBMq / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < kHS / 16; ++kk) {
      uint32_t ak[4], av[4];
      ldmatrix_x4(ak, sK + (warp * 16 + lane % 16) * kLD + kk * 16 + (lane / 16) * 8);
      ldmatrix_x4(av, sV + (warp * 16 + lane % 16) * kLD + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int np = 0; np < kBMq / 16; ++np) {
        uint32_t r[4];
        const int off = (np * 16 + (mi >> 1) * 8 + r8) * kLD + kk * 16 + (mi & 1) * 8;
        ldmatrix_x4(r, sQ + off);
        mma_bf16(sT[2 * np], ak, r[0], r[1]);
        mma_bf16(sT[2 * np + 1], ak, r[2], r[3]);
        ldmatrix_x4(r, sdO + off);
        mma_bf16(dpT[2 * np], av, r[0], r[1]);
        mma_bf16(dpT[2 * np + 1], av, r[2], r[3]);
      }
    }
    // Pᵀ (in sT) and dSᵀ (in dpT)
#pragma unroll
    for (int nt = 0; nt < kBMq / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ql = nt * 8 + 2 * t + (e & 1), q = q0 + ql, key = key0 + (e >> 1) * 8;
        const bool ok = q < len && key < len && (!kCausal || q >= key);
        const float pv = ok ? exp2f(sT[nt][e] * p.scale_log2 - sL[ql]) : 0.0f;
        sT[nt][e] = pv;
        dpT[nt][e] = pv * (dpT[nt][e] - sD[ql]);
      }
    // dV += Pᵀ·dO, dK += dSᵀ·Q  (k = queries; B operands transposed out of [query][col] tiles)
#pragma unroll
    for (int kk = 0; kk < kBMq / 16; ++kk) {
      uint32_t ap[4], as[4];
      acc_to_a(ap, sT[2 * kk], sT[2 * kk + 1]);
      acc_to_a(as, dpT[2 * kk], dpT[2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < kHS / 16; ++dp) {
        uint32_t r[4];
        const int off = (kk * 16 + (mi & 1) * 8 + r8) * kLD + dp * 16 + (mi >> 1) * 8;
        ldmatrix_x4_trans(r, sdO + off);
        mma_bf16(dv[2 * dp], ap, r[0], r[1]);
        mma_bf16(dv[2 * dp + 1], ap, r[2], r[3]);
        ldmatrix_x4_trans(r, sQ + off);
        mma_bf16(dk[2 * dp], as, r[0], r[1]);
        mma_bf16(dk[2 * dp + 1], as, r[2], r[3]);
      }
    }
    // dSᵀ → shared memory for dQ, which needs all 64 keys of the block
#pragma unroll
    for (int nt = 0; nt < kBMq / 8; ++nt) {
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g) * kLDS + nt * 8 + 2 * t) = pack_bf16(dpT[nt][0], dpT[nt][1]);
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8) * kLDS + nt * 8 + 2 * t) = pack_bf16(dpT[nt][2], dpT[nt][3]);
    }
    __syncthreads();
    // dQ (kBMq × HS) += scale·dS·K over this block's keys: item = (16-row tile mt, column chunk nc)
    // (A = dS read transposed out of dSᵀ; B = K read transposed out of [key][col])
    for (int item = warp; item < kItems; item += kWarps) {
      const int mt = item / kChunks, c0 = (item % kChunks) * kChunk;
      float acc[kChunk / 8][4] = {};
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        uint32_t a[4];
        ldmatrix_x4_trans(a, sdS + (kk * 16 + (mi >> 1) * 8 + r8) * kLDS + mt * 16 + (mi & 1) * 8);
#pragma unroll
        for (int dp = 0; dp < kChunk / 16; ++dp) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, sK + (kk * 16 + (mi & 1) * 8 + r8) * kLD + c0 + dp * 16 + (mi >> 1) * 8);
          mma_bf16(acc[2 * dp], a, r[0], r[1]);
          mma_bf16(acc[2 * dp + 1], a, r[2], r[3]);
        }
      }
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int q = q0 + mt * 16 + g + hr * 8;
        if (q >= len) continue;
        float* dst = p.dq_acc + size_t(seq0 + q) * p.NH * p.hs + h * p.hs;
#pragma unroll
        for (int dt = 0; dt < kChunk / 8; ++dt) {
          const int col = c0 + dt * 8 + 2 * t;
          if (col < p.hs) atomicAdd(dst + col, acc[dt][2 * hr] * p.scale);
          if (col + 1 < p.hs) atomicAdd(dst + col + 1, acc[dt][2 * hr + 1] * p.scale);
        }
      }
    }
    __syncthreads();  // sL, sD, sdS and this buffer are overwritten next
  }

  T* dK = static_cast<T*>(p.dk);
  T* dV = static_cast<T*>(p.dv);
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int key = key0 + hr * 8;
    if (key >= len) continue;
#pragma unroll
    for (int dt = 0; dt < kHS / 8; ++dt) {
      const int col = dt * 8 + 2 * t;
      st2(dK + (seq0 + key) * p.sdk + h * p.hs + col, dk[dt][2 * hr] * p.scale, dk[dt][2 * hr + 1] * p.scale, p.hs - col);
      st2(dV + (seq0 + key) * p.sdv + h * p.hs + col, dv[dt][2 * hr], dv[dt][2 * hr + 1], p.hs - col);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Naive reference kernels: one thread per row, fp32, head size ≤ kMaxHS.
constexpr int kMaxHS = 128;

template <bool kCausal, class T>
__global__ void naive_fwd_kernel(Params p) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= len) return;
  const T* q = static_cast<const T*>(p.q) + (seq0 + i) * p.sq + h * p.hs;
  float qv[kMaxHS], acc[kMaxHS];
  for (int c = 0; c < p.hs; ++c) qv[c] = ld(q + c), acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const int end = kCausal ? i + 1 : len;
  for (int j = 0; j < end; ++j) {
    const T* k = static_cast<const T*>(p.k) + (seq0 + j) * p.sk + h * p.hs;
    const T* v = static_cast<const T*>(p.v) + (seq0 + j) * p.sv + h * p.hs;
    float s = 0;
    for (int c = 0; c < p.hs; ++c) s += qv[c] * ld(k + c);
    s *= p.scale;
    const float m_new = fmaxf(m, s), alpha = __expf(m - m_new), pj = __expf(s - m_new);
    l = l * alpha + pj;
    for (int c = 0; c < p.hs; ++c) acc[c] = acc[c] * alpha + pj * ld(v + c);
    m = m_new;
  }
  T* o = static_cast<T*>(p.o) + (seq0 + i) * p.so + h * p.hs;
  for (int c = 0; c < p.hs; ++c) st(o + c, acc[c] / l);
  p.lse[size_t(seq0 + i) * p.NH + h] = m + logf(l);
}

// dQ_i = scale·Σ_j dS_ij·k_j   (thread per query row)
template <bool kCausal, class T>
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
  const int end = kCausal ? i + 1 : len;
  for (int j = 0; j < end; ++j) {
    const T* k = static_cast<const T*>(p.k) + (seq0 + j) * p.sk + h * p.hs;
    const T* v = static_cast<const T*>(p.v) + (seq0 + j) * p.sv + h * p.hs;
    float s = 0, dp = 0;
    for (int c = 0; c < p.hs; ++c) s += qv[c] * ld(k + c), dp += dov[c] * ld(v + c);
    const float pij = __expf(s * p.scale - lse), ds = pij * (dp - D);
    for (int c = 0; c < p.hs; ++c) acc[c] += ds * ld(k + c);
  }
  T* dq = static_cast<T*>(p.dq) + row * p.sdq + h * p.hs;
  for (int c = 0; c < p.hs; ++c) st(dq + c, acc[c] * p.scale);
}

// dV_j = Σ_i P_ij·dO_i,  dK_j = scale·Σ_i dS_ij·q_i   (thread per key row)
template <bool kCausal, class T>
__global__ void naive_bwd_dkv_kernel(Params p) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= len) return;
  const size_t row = seq0 + j;
  const T* k = static_cast<const T*>(p.k) + row * p.sk + h * p.hs;
  const T* v = static_cast<const T*>(p.v) + row * p.sv + h * p.hs;
  float kv[kMaxHS], vv[kMaxHS], dk[kMaxHS], dv[kMaxHS];
  for (int c = 0; c < p.hs; ++c) kv[c] = ld(k + c), vv[c] = ld(v + c), dk[c] = dv[c] = 0.0f;
  for (int i = kCausal ? j : 0; i < len; ++i) {
    const size_t qrow = seq0 + i;
    const T* q = static_cast<const T*>(p.q) + qrow * p.sq + h * p.hs;
    const T* dout = static_cast<const T*>(p.dout) + qrow * p.sdo + h * p.hs;
    float s = 0, dp = 0;
    for (int c = 0; c < p.hs; ++c) s += ld(q + c) * kv[c], dp += ld(dout + c) * vv[c];
    const float pij = __expf(s * p.scale - p.lse[qrow * p.NH + h]), ds = pij * (dp - p.D[qrow * p.NH + h]);
    for (int c = 0; c < p.hs; ++c) dv[c] += pij * ld(dout + c), dk[c] += ds * ld(q + c);
  }
  T* dkp = static_cast<T*>(p.dk) + row * p.sdk + h * p.hs;
  T* dvp = static_cast<T*>(p.dv) + row * p.sdv + h * p.hs;
  for (int c = 0; c < p.hs; ++c) st(dkp + c, dk[c] * p.scale), st(dvp + c, dv[c]);
}

// ------------------------------------------------------------------------------------------------
// Attention of the last query of each sequence (fp32). One block of kLastWarps warps per (sequence,
// head); warp w takes keys w, w + kLastWarps, ...; lane c holds columns c, c + 32, ...
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

// ------------------------------------------------------------------------------------------------
// Dispatch

Params make_params(const AttnShape& s) {
  Params p{};
  p.cu = s.cu_seqlens, p.NH = s.NH, p.hs = s.HS;
  p.scale = 1.0f / sqrtf(static_cast<float>(s.HS));
  p.scale_log2 = p.scale * kLog2e;
  return p;
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

// Tiles are read in 16-byte pieces when every row start is 16-byte aligned (8 bf16 / 4 fp32).
template <class T>
bool rows_vectorizable(const AttnShape& s, std::initializer_list<std::pair<const void*, long>> rows) {
  const int per16 = 16 / sizeof(T);
  if (s.HS % per16) return false;
  for (auto [ptr, stride] : rows)
    if (!aligned16(ptr) || stride % per16) return false;
  return true;
}

int padded_hs(int hs) { return hs <= 32 ? 32 : hs <= 64 ? 64 : 128; }

// The flash variants (AttnKernel): forward block = kWarps × kMT × 16 query rows; backward block =
// 16 × kWarps keys, query tiles of kBwdBMq rows (32 for head size 128, to fit the registers).
constexpr int kBwdBMq(int hs) { return hs <= 64 ? 64 : 32; }
struct Variant {
  int fwd_mt, bwd_warps;  // forward: 16-row tiles per warp (4 warps); backward: warps per key block
};
constexpr Variant variant_of(AttnKernel k) { return k == AttnKernel::Flash128 ? Variant{2, 8} : Variant{1, 4}; }

template <int kHS, int kWarps, int kMT>
size_t fwd_smem() {
  return size_t(16 * kMT * kWarps + 4 * 64) * (kHS + 8) * sizeof(bf16);
}
template <int kHS, int kBMq, int kWarps>
size_t bwd_smem() {
  return (size_t(2 * 16 * kWarps + 4 * kBMq) * (kHS + 8) + size_t(16 * kWarps) * (kBMq + 8)) * sizeof(bf16) +
         2 * kBMq * sizeof(float);
}

template <int kHS, int kWarps, int kMT, bool kCausal, class T>
void launch_flash_fwd(const AttnShape& s, const Params& p, cudaStream_t st) {
  auto kernel = flash_fwd_kernel<kHS, kWarps, kMT, kCausal, T>;
  const size_t smem = fwd_smem<kHS, kWarps, kMT>();
  static const cudaError_t opt_in =  // once per instantiation (and per process: one device)
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  check(opt_in, "attention forward shared memory");
  constexpr int kBM = 16 * kMT * kWarps;
  const dim3 grid((s.max_len + kBM - 1) / kBM, s.NH, s.B);
  kernel<<<grid, 32 * kWarps, smem, st>>>(p);
  CAIRN_CUDA_LAUNCH_CHECK("flash attention forward");
}

template <int kHS, int kWarps, bool kCausal, class T>
void launch_flash_bwd(const AttnShape& s, const Params& p, cudaStream_t st) {
  constexpr int kBMq = kBwdBMq(kHS);
  auto kernel = flash_bwd_kernel<kHS, kBMq, kWarps, kCausal, T>;
  const size_t smem = bwd_smem<kHS, kBMq, kWarps>();
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  check(opt_in, "attention backward shared memory");
  const dim3 grid((s.max_len + 16 * kWarps - 1) / (16 * kWarps), s.NH, s.B);
  kernel<<<grid, 32 * kWarps, smem, st>>>(p);
  CAIRN_CUDA_LAUNCH_CHECK("flash attention backward");
}

template <int kWarps, int kMT, bool kCausal, class T>
void flash_fwd_v(const AttnShape& s, const Params& p, cudaStream_t st) {
  switch (padded_hs(s.HS)) {
    case 32: return launch_flash_fwd<32, kWarps, kMT, kCausal, T>(s, p, st);
    case 64: return launch_flash_fwd<64, kWarps, kMT, kCausal, T>(s, p, st);
    default: return launch_flash_fwd<128, kWarps, kMT, kCausal, T>(s, p, st);
  }
}
template <int kWarps, bool kCausal, class T>
void flash_bwd_v(const AttnShape& s, const Params& p, cudaStream_t st) {
  switch (padded_hs(s.HS)) {
    case 32: return launch_flash_bwd<32, kWarps, kCausal, T>(s, p, st);
    case 64: return launch_flash_bwd<64, kWarps, kCausal, T>(s, p, st);
    default: return launch_flash_bwd<128, kWarps, kCausal, T>(s, p, st);
  }
}
template <bool kCausal, class T>
void flash_fwd(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st) {
  if (variant_of(k).fwd_mt == 2) flash_fwd_v<4, 2, kCausal, T>(s, p, st);
  else flash_fwd_v<4, 1, kCausal, T>(s, p, st);
}
template <bool kCausal, class T>
void flash_bwd(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st) {
  if (variant_of(k).bwd_warps == 8) flash_bwd_v<8, kCausal, T>(s, p, st);
  else flash_bwd_v<4, kCausal, T>(s, p, st);
}

template <class T>
void forward_typed(AttnKernel k, const AttnShape& s, const AttnFwd& a, cudaStream_t st) {
  Params p = make_params(s);
  p.q = a.q, p.k = a.k, p.v = a.v, p.sq = a.stride_q, p.sk = a.stride_k, p.sv = a.stride_v;
  p.o = a.out, p.so = a.stride_out, p.lse = a.lse;
  p.vec = rows_vectorizable<T>(s, {{a.q, a.stride_q}, {a.k, a.stride_k}, {a.v, a.stride_v}});
  if (std::is_same_v<T, bf16> && !p.vec)
    throw std::invalid_argument("bf16 attention needs 16-byte aligned rows and a head size divisible by 8");
  if (k == AttnKernel::Naive) {
    const dim3 grid((s.max_len + 127) / 128, s.NH, s.B);
    if (s.causal) naive_fwd_kernel<true, T><<<grid, 128, 0, st>>>(p);
    else naive_fwd_kernel<false, T><<<grid, 128, 0, st>>>(p);
    return CAIRN_CUDA_LAUNCH_CHECK("naive attention forward");
  }
  if (s.causal) flash_fwd<true, T>(k, s, p, st);
  else flash_fwd<false, T>(k, s, p, st);
}

template <class T>
void backward_typed(AttnKernel k, const AttnShape& s, const AttnBwd& a, cudaStream_t st) {
  Params p = make_params(s);
  p.q = a.q, p.k = a.k, p.v = a.v, p.out = a.out, p.dout = a.dout;
  p.sq = a.stride_q, p.sk = a.stride_k, p.sv = a.stride_v, p.so = a.stride_out, p.sdo = a.stride_dout;
  p.lse = const_cast<float*>(a.lse);
  p.dq = a.dq, p.dk = a.dk, p.dv = a.dv, p.sdq = a.stride_dq, p.sdk = a.stride_dk, p.sdv = a.stride_dv;
  p.D = a.workspace;
  p.dq_acc = k != AttnKernel::Naive ? a.workspace + size_t(s.n_tokens) * s.NH : nullptr;
  p.vec = rows_vectorizable<T>(s, {{a.q, a.stride_q}, {a.k, a.stride_k}, {a.v, a.stride_v}, {a.dout, a.stride_dout}});
  if (std::is_same_v<T, bf16> && !p.vec)
    throw std::invalid_argument("bf16 attention needs 16-byte aligned rows and a head size divisible by 8");
  const long warps = long(s.n_tokens) * s.NH;
  bwd_preprocess_kernel<T><<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, st>>>(p, s.n_tokens);
  CAIRN_CUDA_LAUNCH_CHECK("attention backward pre-pass");
  if (k == AttnKernel::Naive) {
    const dim3 grid((s.max_len + 127) / 128, s.NH, s.B);
    if (s.causal) {
      naive_bwd_dq_kernel<true, T><<<grid, 128, 0, st>>>(p);
      naive_bwd_dkv_kernel<true, T><<<grid, 128, 0, st>>>(p);
    } else {
      naive_bwd_dq_kernel<false, T><<<grid, 128, 0, st>>>(p);
      naive_bwd_dkv_kernel<false, T><<<grid, 128, 0, st>>>(p);
    }
    return CAIRN_CUDA_LAUNCH_CHECK("naive attention backward");
  }
  if (s.causal) flash_bwd<true, T>(k, s, p, st);
  else flash_bwd<false, T>(k, s, p, st);
  const size_t n = size_t(s.n_tokens) * s.NH * s.HS;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 132 * 32));
  bwd_write_dq_kernel<T><<<blocks ? blocks : 1, 256, 0, st>>>(p, s.n_tokens);
  CAIRN_CUDA_LAUNCH_CHECK("attention backward dq");
}

void check_head_size(int HS) {
  if (HS < 1 || HS > kMaxHS) throw std::invalid_argument("CUDA attention supports head sizes 1..128");
}
void check_shape(const AttnShape& s) {
  check_head_size(s.HS);
  if (s.B < 0 || s.NH < 1 || s.max_len < 0) throw std::invalid_argument("CUDA attention: bad shape");
}

}  // namespace

const char* attn_kernel_name(AttnKernel k) {
  return k == AttnKernel::Naive ? "naive" : k == AttnKernel::Flash64 ? "flash64" : "flash128";
}

size_t attention_bwd_workspace_floats(const AttnShape& s) {
  return size_t(s.n_tokens) * s.NH * (1 + size_t(s.HS));
}

void attention_forward(AttnKernel k, AttnDtype t, const AttnShape& s, const AttnFwd& a, cudaStream_t st) {
  check_shape(s);
  if (s.B == 0 || s.max_len == 0) return;
  if (t == AttnDtype::F32) forward_typed<float>(k, s, a, st);
  else forward_typed<bf16>(k, s, a, st);
}

void attention_backward(AttnKernel k, AttnDtype t, const AttnShape& s, const AttnBwd& a, cudaStream_t st) {
  check_shape(s);
  if (s.B == 0 || s.max_len == 0) return;
  if (t == AttnDtype::F32) backward_typed<float>(k, s, a, st);
  else backward_typed<bf16>(k, s, a, st);
}

void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu_seqlens, int B, int NH,
                            int HS, cudaStream_t s) {
  check_head_size(HS);
  if (B == 0) return;
  last_fwd_kernel<<<dim3(B, NH), 32 * kLastWarps, 0, s>>>(out, lse, qkv, cu_seqlens, NH, HS);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention forward");
}

void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu_seqlens, int B, int N, int NH, int HS, cudaStream_t s) {
  check_head_size(HS);
  check(cudaMemsetAsync(dqkv, 0, size_t(N) * 3 * NH * HS * sizeof(float), s), "last-query attention backward");
  if (B == 0) return;
  last_bwd_kernel<<<dim3(B, NH), 32 * kLastWarps, 0, s>>>(dqkv, dout, qkv, out, lse, cu_seqlens, NH, HS);
  CAIRN_CUDA_LAUNCH_CHECK("last-query attention backward");
}

}  // namespace cairn::cuda
