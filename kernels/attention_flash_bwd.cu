// Flash attention backward (FlashAttention-2 style), its pre- and post-pass, and their launchers.
//
// Thread mapping: grid (key tiles, NKV, B), kWarps·32 threads; a block owns kBN = 16·kWarps keys of one
// (sequence, key/value head kvh), warp w the keys k0 + 16w .. k0 + 16w + 15, and walks the query tiles
// (kBMq rows, cp.async double buffered) of each query head h = kvh·group .. kvh·group + group − 1 that
// reads kvh, in turn (one pipeline: the prefetch after a head's last tile is the next head's first),
// recomputing P from the saved lse of head h:
//   Sᵀ = K·Qᵀ,  Pᵀ = exp(scale·Sᵀ − lse),  dPᵀ = V·dOᵀ,  dSᵀ = Pᵀ∘(dPᵀ − D),  D = rowsum(dO∘O)
//   dV += Pᵀ·dO,  dK += scale·dSᵀ·Q   (registers, written once at the end)
//   dQ += scale·dS·K                  (dSᵀ staged in shared memory; fp32 atomics into a workspace)
// Grouped-query attention: K and V are shared by the group, so dK = Σ_h scale·dS_hᵀ·Q_h and
// dV = Σ_h P_hᵀ·dO_h, summed over the group's query heads in the same registers in a fixed order
// (deterministic; no dK/dV workspace). dQ of head h is its own columns of the accumulator, reached by
// the blocks of every key tile of kvh (atomics, as for multi-head attention).
// Shared prefixes (Params::prefix_of): the queries that read a block's keys are its own segment's
// (causal) and, when its segment opens a group, every query of each segment continuing it (all of them
// see every prefix key: unmasked). Such a block walks, for each query head, the query tiles of its own
// segment and then those of each continuing segment in order — iterations (h, source, qt), qt fastest,
// one pipeline — so a prefix key's dK, dV are summed over the whole group in the same registers, in a
// fixed order, and written once, by the one block that owns the key tile (race-free and deterministic,
// no extra pass or workspace). A continuing segment's key tiles are read by its own queries only. dQ
// of a continuing segment gets its prefix's terms from the prefix's blocks and its own from its own, by
// the same atomics as always. The grid is unchanged; a prefix's blocks do the group's work for its keys.
// This is the kPrefix = true instantiation; kPrefix = false (prefix_of null) has one source.
// The dQ product is split over all warps of the block: (16-row tile, column chunk) items.
// Pre-pass: one warp per (row, query head). Post-pass: grid-stride, one thread per element.
// Precision: the MMAs take bf16 operands and accumulate fp32; P, dS, D, lse and the dQ accumulator are
// fp32. Workspace: dQ accumulator [N, NH·HS] + D [N, NH], fp32.
#include "kernels/attention_common.cuh"

namespace cairn::cuda::attn {
namespace {

// The backward layout of a tiling at padded head size kHS_, read by the kernel and its launcher.
// Shared memory, bf16 rows of kLD (Q, dO, K, V) or kLDS (dSᵀ) elements, then fp32:
//   sK [kBN][kLD] | sV [kBN][kLD] | sQ [kQBufs][kBMq][kLD] | sdO [kQBufs][kBMq][kLD] | sdS [kBN][kLDS]
//   | sL [kBMq] | sD [kBMq]
template <class Tiling, int kHS_>
struct FlashBwd {
  static constexpr int kHS = kHS_, kWarps = Tiling::kBwdWarps, kThreads = 32 * kWarps;
  static constexpr int kBN = 16 * kWarps;           // keys per block
  static constexpr int kBMq = kHS <= 64 ? 64 : 32;  // queries per tile (32 for head size 128, to fit the registers)
  static constexpr int kLD = tile_pitch(kHS), kLDS = tile_pitch(kBMq), kQBufs = 2;
  static constexpr int kTileQ = kBMq * kLD;  // elements of one Q (or dO) buffer
  static constexpr int kOffK = 0, kOffV = kOffK + kBN * kLD, kOffQ = kOffV + kBN * kLD;  // bf16 elements
  static constexpr int kOffdO = kOffQ + kQBufs * kTileQ, kOffdS = kOffdO + kQBufs * kTileQ;
  static constexpr int kOffL = kOffdS + kBN * kLDS;  // bf16 elements before sL
  static constexpr size_t kSmemBytes = size_t(kOffL) * sizeof(bf16) + 2 * kBMq * sizeof(float);
  static_assert(kOffL % 2 == 0, "sL, sD (fp32) start 4-byte aligned");
};

// Pre-pass: D[n, h] = Σ_c dO·O, and the dQ accumulator zeroed. One warp per (row, head).
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

// Post-pass: dq (T) = dQ accumulator.
template <class T>
__global__ void bwd_write_dq_kernel(Params p, int N) {
  const size_t n = size_t(N) * p.NH * p.hs;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const size_t row = i / (p.NH * p.hs), col = i % (p.NH * p.hs);
    st(static_cast<T*>(p.dq) + row * p.sdq + col, p.dq_acc[i]);
  }
}

// kPrefix = false: no shared prefixes (Params::prefix_of null) — the plain path: one source, src = 0.
template <class Tr, bool kCausal, bool kPrefix, class T>
__global__ void __launch_bounds__(Tr::kThreads) flash_bwd_kernel(Params p) {
  constexpr int kHS = Tr::kHS, kBMq = Tr::kBMq, kWarps = Tr::kWarps, kBN = Tr::kBN, kLD = Tr::kLD;
  constexpr int kLDS = Tr::kLDS, kThreads = Tr::kThreads;
  constexpr int kChunk = (kHS * (kBMq / 16) / kWarps) < 16 ? 16 : (kHS * (kBMq / 16) / kWarps);  // dQ columns per item
  constexpr int kChunks = kHS / kChunk, kItems = (kBMq / 16) * kChunks;
  static_assert(kChunk % 16 == 0 && kHS % kChunk == 0, "dQ column chunks are whole 16-column MMA tiles");
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem) + Tr::kOffK;     // [kBN][kLD]
  bf16* sV = reinterpret_cast<bf16*>(smem) + Tr::kOffV;     // [kBN][kLD]
  bf16* sQ2 = reinterpret_cast<bf16*>(smem) + Tr::kOffQ;    // [kQBufs][kBMq][kLD]  (the next tile streams in)
  bf16* sdO2 = reinterpret_cast<bf16*>(smem) + Tr::kOffdO;  // [kQBufs][kBMq][kLD]
  bf16* sdS = reinterpret_cast<bf16*>(smem) + Tr::kOffdS;   // [kBN][kLDS]: dSᵀ, keys × queries
  float* sL = reinterpret_cast<float*>(reinterpret_cast<bf16*>(smem) + Tr::kOffL);  // [kBMq] lse·log2(e)
  float* sD = sL + kBMq;                                                            // [kBMq]

  const int b = blockIdx.z, kvh = blockIdx.y;  // the key/value head
  const int seq0 = p.cu[b], len = p.cu[b + 1] - seq0;
  const int k0 = blockIdx.x * kBN;
  if (k0 >= len) return;
  const int base = kPrefix ? 0 : seq0;  // Q, dO start at row base
  const T* Q = static_cast<const T*>(p.q) + base * p.sq;  // + (row − base)·sq + h·hs: query head h
  const T* dO = static_cast<const T*>(p.dout) + base * p.sdo;
  // The query segments that read these keys ("sources"): src 0 = segment b itself (causal), src 1 ..
  // n_src − 1 = the segments b + src continuing it, rows cu[src] .. cu[src + 1] − 1 (src_row0, src_len).
  // Without prefixes n_src = 1, src stays 0 and these are seq0, len: the plain path.
  const int32_t* cu = p.cu + b;
  const int n_src = 1 + n_continuations<kPrefix>(p, b);
  auto src_row0 = [&](int src) { return kPrefix ? cu[src] : seq0; };
  auto src_len = [&](int src) { return kPrefix ? cu[src + 1] - cu[src] : len; };
  auto qt_first = [&](int src) { return kCausal && src == 0 ? k0 / kBMq : 0; };
  auto qt_end = [&](int src) { return (src_len(src) + kBMq - 1) / kBMq; };
  const int qt_begin = qt_first(0), qt_end0 = qt_end(0);  // the own segment's tiles: qt_begin < qt_end0
  const int h_begin = kvh * p.group, h_end = h_begin + p.group;  // the group's query heads
  auto load_q = [&](int h, int src, int qt, int buf) {  // query tile (h, src, qt) into Q/dO buffer buf
    const int q0 = qt * kBMq, row = src_row0(src) - base + q0;
    load_tile<kBMq, kHS, kThreads>(sQ2 + buf * Tr::kTileQ, Q + row * p.sq + h * p.hs, p.sq, src_len(src) - q0, p.hs,
                                   p.vec);
    load_tile<kBMq, kHS, kThreads>(sdO2 + buf * Tr::kTileQ, dO + row * p.sdo + h * p.hs, p.sdo, src_len(src) - q0,
                                   p.hs, p.vec);
  };
  load_tile<kBN, kHS, kThreads>(sK, static_cast<const T*>(p.k) + (seq0 + k0) * p.sk + kvh * p.hs, p.sk, len - k0, p.hs,
                                p.vec);
  load_tile<kBN, kHS, kThreads>(sV, static_cast<const T*>(p.v) + (seq0 + k0) * p.sv + kvh * p.hs, p.sv, len - k0, p.hs,
                                p.vec);
  load_q(h_begin, 0, qt_begin, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int mi = lane / 8, r8 = lane % 8;
  float dk[kHS / 8][4] = {}, dv[kHS / 8][4] = {};
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0, key0 + 8

  // Iterations (h, src, qt), qt fastest: h = h_begin .. h_end − 1, src = 0 .. n_src − 1, qt = qt_first(src)
  // .. qt_end(src) − 1 (a source without rows has no tiles; src 0 always has one, so this ends).
  int h = h_begin, src = 0, qt = qt_begin;
  for (int it = 0; h < h_end; ++it) {
    const int q0 = qt * kBMq, buf = it & 1;
    const int qrow0 = src_row0(src), qlen = src_len(src);  // the source's rows
    const bool causal = kCausal && src == 0;                // a continuing segment sees every prefix key
    int hn = h, srcn = src, qtn = qt + 1;                   // the next iteration's tile
    if constexpr (kPrefix) {
      while (qtn == qt_end(srcn)) {
        if (++srcn == n_src) srcn = 0, ++hn;
        qtn = qt_first(srcn);
      }
    } else if (qtn == qt_end0) {  // one source: the next head's first tile
      qtn = qt_begin, ++hn;
    }
    if (hn < h_end) load_q(hn, srcn, qtn, buf ^ 1);  // prefetch it into the other buffer
    cp_async_commit();
    for (int i = threadIdx.x; i < kBMq; i += kThreads) {
      const bool ok = q0 + i < qlen;
      sL[i] = ok ? p.lse[size_t(qrow0 + q0 + i) * p.NH + h] * kLog2e : 0.0f;
      sD[i] = ok ? p.D[size_t(qrow0 + q0 + i) * p.NH + h] : 0.0f;
    }
    cp_async_wait<1>();  // this tile (and K, V) have landed; the prefetch may still be in flight
    __syncthreads();
    const bf16* sQ = sQ2 + buf * Tr::kTileQ;
    const bf16* sdO = sdO2 + buf * Tr::kTileQ;

    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: 16 keys × kBMq queries per warp
    float sT[kBMq / 8][4] = {}, dpT[kBMq / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < kHS / 16; ++kk) {
      uint32_t ak[4], av[4];
      ldmatrix_x4(ak, sK + (warp * 16 + lane % 16) * kLD + kk * 16 + (lane / 16) * 8);
      ldmatrix_x4(av, sV + (warp * 16 + lane % 16) * kLD + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int np = 0; np < kBMq / 16; ++np) {
        const int off = (np * 16 + (mi >> 1) * 8 + r8) * kLD + kk * 16 + (mi & 1) * 8;
        ldmatrix_mma<false>(sT[2 * np], sT[2 * np + 1], ak, sQ + off);
        ldmatrix_mma<false>(dpT[2 * np], dpT[2 * np + 1], av, sdO + off);
      }
    }
    // Pᵀ (in sT) and dSᵀ (in dpT)
#pragma unroll
    for (int nt = 0; nt < kBMq / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ql = nt * 8 + 2 * t + (e & 1), q = q0 + ql, key = key0 + (e >> 1) * 8;
        const bool ok = q < qlen && key < len && (!causal || q >= key);
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
        const int off = (kk * 16 + (mi & 1) * 8 + r8) * kLD + dp * 16 + (mi >> 1) * 8;
        ldmatrix_mma<true>(dv[2 * dp], dv[2 * dp + 1], ap, sdO + off);
        ldmatrix_mma<true>(dk[2 * dp], dk[2 * dp + 1], as, sQ + off);
      }
    }
    // dSᵀ → shared memory for dQ, which needs all the keys of the block
#pragma unroll
    for (int nt = 0; nt < kBMq / 8; ++nt) {
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g) * kLDS + nt * 8 + 2 * t) = pack_bf16(dpT[nt][0], dpT[nt][1]);
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8) * kLDS + nt * 8 + 2 * t) =
          pack_bf16(dpT[nt][2], dpT[nt][3]);
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
        for (int dp = 0; dp < kChunk / 16; ++dp)
          ldmatrix_mma<true>(acc[2 * dp], acc[2 * dp + 1], a,
                             sK + (kk * 16 + (mi & 1) * 8 + r8) * kLD + c0 + dp * 16 + (mi >> 1) * 8);
      }
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int q = q0 + mt * 16 + g + hr * 8;
        if (q >= qlen) continue;
        float* dst = p.dq_acc + size_t(qrow0 + q) * p.NH * p.hs + h * p.hs;
#pragma unroll
        for (int dt = 0; dt < kChunk / 8; ++dt) {
          const int col = c0 + dt * 8 + 2 * t;
          if (col < p.hs) atomicAdd(dst + col, acc[dt][2 * hr] * p.scale);
          if (col + 1 < p.hs) atomicAdd(dst + col + 1, acc[dt][2 * hr + 1] * p.scale);
        }
      }
    }
    __syncthreads();  // sL, sD, sdS and this buffer are overwritten next
    h = hn, src = srcn, qt = qtn;
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
      st2(dK + (seq0 + key) * p.sdk + kvh * p.hs + col, dk[dt][2 * hr] * p.scale, dk[dt][2 * hr + 1] * p.scale,
          p.hs - col);
      st2(dV + (seq0 + key) * p.sdv + kvh * p.hs + col, dv[dt][2 * hr], dv[dt][2 * hr + 1], p.hs - col);
    }
  }
}

template <class Tr, bool kCausal, bool kPrefix, class T>
void launch(const AttnShape& s, const Params& p, cudaStream_t st) {
  auto kernel = flash_bwd_kernel<Tr, kCausal, kPrefix, T>;
  static PerDevice<cudaError_t> opt_in;
  opt_in_smem(opt_in, kernel, Tr::kSmemBytes, "attention backward shared memory");
  const dim3 grid((s.max_len + Tr::kBN - 1) / Tr::kBN, s.NKV, s.B);  // one block per (key tile, kv head)
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, st>>>(p);
  CAIRN_CUDA_LAUNCH_CHECK("flash attention backward");
}

}  // namespace

template <class T>
void bwd_preprocess(const AttnShape& s, const Params& p, cudaStream_t st) {
  const long warps = long(s.n_tokens) * s.NH;
  bwd_preprocess_kernel<T><<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, st>>>(p, s.n_tokens);
  CAIRN_CUDA_LAUNCH_CHECK("attention backward pre-pass");
}

template <class T>
void flash_backward(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st) {
  dispatch_flash<FlashBwd>(k, s, [&](auto layout, auto causal, auto prefix) {
    launch<typename decltype(layout)::type, decltype(causal)::value, decltype(prefix)::value, T>(s, p, st);
  });
  const size_t n = size_t(s.n_tokens) * s.NH * s.HS;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, size_t(sm_count()) * 32));
  bwd_write_dq_kernel<T><<<blocks ? blocks : 1, 256, 0, st>>>(p, s.n_tokens);
  CAIRN_CUDA_LAUNCH_CHECK("attention backward dq");
}

template void bwd_preprocess<float>(const AttnShape&, const Params&, cudaStream_t);
template void bwd_preprocess<bf16>(const AttnShape&, const Params&, cudaStream_t);
template void flash_backward<float>(AttnKernel, const AttnShape&, const Params&, cudaStream_t);
template void flash_backward<bf16>(AttnKernel, const AttnShape&, const Params&, cudaStream_t);

}  // namespace cairn::cuda::attn
