// What every attention translation unit shares (internal to kernels/attention*.cu):
//   - Params, the one argument struct of every attention kernel (type-erased q/k/v/o pointers, strides);
//   - prefix_rows / n_continuations: the shared-prefix layout (AttnShape::prefix_of) as the kernels read it;
//   - ld / st / st2 (fp32 or bf16 element access) and load_tile (global → shared bf16 tile staging);
//   - the B-operand fragment helpers: one ldmatrix (plain or .trans) feeding the two 16×8 MMAs of a
//     16×16 tile (the fragment layouts are in kernels/common.cuh);
//   - the flash tilings Flash64 / Flash128, read by the kernels and their launchers;
//   - the per-family launchers that attention.cu dispatches to (defined in attention_flash_fwd.cu,
//     attention_flash_bwd.cu, attention_naive.cu; each family instantiates its kernels in its own file).
// Thread mapping: load_tile strides the tile's 16-byte chunks over the block's threads; the fragment
// helpers are per warp. All accumulation is fp32; bf16 only as MMA operands and bf16 storage.
#pragma once
#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kMaxHS = 128;  // largest head size (the naive kernels keep rows of kMaxHS floats)

inline void check_head_size(int HS) {
  if (HS < 1 || HS > kMaxHS) throw std::invalid_argument("CUDA attention supports head sizes 1..128");
}

// Head sizes up to 128 run on tiles padded to 32, 64 or 128 columns (zero-filled).
constexpr int padded_hs(int hs) { return hs <= 32 ? 32 : hs <= 64 ? 64 : 128; }

// Row pitch (elements) of a bf16 tile of `cols` columns in shared memory: the 8-element (16-byte) pad
// shifts consecutive rows by 4 banks, which keeps ldmatrix free of bank conflicts.
constexpr int tile_pitch(int cols) { return cols + 8; }

// Grouped-query attention: q, out, dout, dq, lse, D and dq_acc have NH (query) heads; k, v, dk, dv
// have NKV = NH / group heads, and query head h reads key/value head h / group (kv_head), at
// columns kv_head(h)·hs of the k / v rows.
struct Params {
  const void *q, *k, *v, *out, *dout;
  long sq, sk, sv, so, sdo;
  void *o, *dq, *dk, *dv;
  long sdq, sdk, sdv;
  float* lse;
  float* dq_acc;  // [N, NH·hs]
  float* D;       // [N, NH]
  const int32_t* cu;
  int NH, NKV, group, hs;  // group = NH / NKV query heads per key/value head
  unsigned group_magic;    // ⌈2³²/group⌉ (group ≥ 2): h / group = umulhi(h, group_magic), see kv_head
  float scale, scale_log2;
  bool vec;  // fp32 rows may be read as float4
  // Read by the kPrefix = true kernels only; last, so the plain path's fields keep their offsets.
  const int32_t* prefix_of;  // (B) shared prefixes (AttnShape::prefix_of), or null
  int B;                     // segments
};
// The key/value head of query head h: h / group, as a multiply-high rather than an integer division
// (which perturbs the register allocation of the flash kernels for nothing). Exact: with m = ⌈2³²/d⌉ =
// (2³² + e)/d, 0 ≤ e < d, h·m/2³² = h/d + h·e/(d·2³²), and the excess h·e/(d·2³²) < 1/d (h·d < 2³²)
// never reaches the next integer, the fractional part of h/d being at most (d − 1)/d.
inline unsigned group_magic(int group) {
  return group >= 2 ? static_cast<unsigned>(((uint64_t(1) << 32) + group - 1) / group) : 0u;
}
__device__ __forceinline__ int kv_head(const Params& p, int h) {
  return p.group == 1 ? h : static_cast<int>(__umulhi(static_cast<unsigned>(h), p.group_magic));
}

// Shared prefixes (AttnShape::prefix_of, the layout of SeqLayout::prefix_of; null: none): segment b
// with prefix_of[b] = g ≥ 0 continues segment g — it reads every row of g, then its own rows — and the
// segments continuing g come right after it (g and they are a group). These are the two views every
// kernel needs: the rows a segment reads before its own, and the segments that read a segment's rows.
struct PrefixRows {
  int row0, len;  // len 0: none
};
__device__ __forceinline__ PrefixRows prefix_rows(const int32_t* cu, const int32_t* prefix_of, int b) {
  const int g = prefix_of ? prefix_of[b] : -1;
  return g < 0 ? PrefixRows{0, 0} : PrefixRows{cu[g], cu[g + 1] - cu[g]};
}
// How many segments continue segment b: those right after it whose prefix is b (0 for a plain
// sequence or a continuing segment).
__device__ __forceinline__ int n_continuations(const int32_t* prefix_of, int B, int b) {
  int n = 0;
  if (prefix_of)
    while (b + 1 + n < B && prefix_of[b + 1 + n] == b) ++n;
  return n;
}
// The kernels' views, for their compile-time kPrefix: with kPrefix = false (prefix_of null) there are
// none, as constants, so the plain path keeps none of the prefix bookkeeping.
template <bool kPrefix>
__device__ __forceinline__ PrefixRows prefix_rows(const Params& p, int b) {
  if constexpr (kPrefix) return prefix_rows(p.cu, p.prefix_of, b);
  else return PrefixRows{0, 0};
}
template <bool kPrefix>
__device__ __forceinline__ int n_continuations(const Params& p, int b) {
  if constexpr (kPrefix) return n_continuations(p.prefix_of, p.B, b);
  else return 0;
}

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

// Stages a tile of kRows rows × kHS columns (row-major, `stride` elements between rows) into shared
// memory as bf16 with rows of tile_pitch(kHS) elements. Rows ≥ nrows and columns ≥ hs are zero.
// bf16 sources go through cp.async (caller commits/waits).
template <int kRows, int kHS, int kThreads, class T>
__device__ __forceinline__ void load_tile(bf16* dst, const T* src, long stride, int nrows, int hs, bool vec) {
  constexpr int kChunks = kHS / 8, kLD = tile_pitch(kHS);
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

// The B operand (16 k × 16 n, bf16) of two adjacent m16n8k16 MMAs from shared memory, one ldmatrix.x4:
// b[0], b[1] = columns 0..7 (b0, b1 of the first MMA), b[2], b[3] = columns 8..15.
//   kTrans = false: the tile is stored n-major ([n][k], e.g. K rows for S = Q·Kᵀ); lane l addresses
//                   row n = (l/16)·8 + l%8, columns k = ((l/8)%2)·8 ..
//   kTrans = true:  the tile is stored k-major ([k][n], e.g. V rows for O = P·V), read transposed;
//                   lane l addresses row k = ((l/8)%2)·8 + l%8, columns n = (l/16)·8 ..
template <bool kTrans>
__device__ __forceinline__ void ldmatrix_b(uint32_t b[4], const bf16* p) {
  if constexpr (kTrans) ldmatrix_x4_trans(b, p);
  else ldmatrix_x4(b, p);
}
// c0 (16×8 fp32) += a · B[:, 0..7],  c1 += a · B[:, 8..15]   (a: 16×16 bf16 A fragment, b from ldmatrix_b)
__device__ __forceinline__ void mma_b16(float c0[4], float c1[4], const uint32_t a[4], const uint32_t b[4]) {
  mma_bf16(c0, a, b[0], b[1]);
  mma_bf16(c1, a, b[2], b[3]);
}
// Both: c0, c1 += a · (the 16×16 B tile this lane addresses at p).
template <bool kTrans>
__device__ __forceinline__ void ldmatrix_mma(float c0[4], float c1[4], const uint32_t a[4], const bf16* p) {
  uint32_t b[4];
  ldmatrix_b<kTrans>(b, p);
  mma_b16(c0, c1, a, b);
}

// The flash tilings (AttnKernel::Flash64, Flash128). The shared-memory layouts derived from them
// (FlashFwd in attention_flash_fwd.cu, FlashBwd in attention_flash_bwd.cu) are what both the kernels
// carve and the launchers request.
struct Flash64 {
  static constexpr int kFwdWarps = 4, kFwdMT = 1;  // forward: 4 warps × 16 query rows = 64-row blocks
  static constexpr int kBwdWarps = 4;              // backward: 4 warps × 16 keys = 64-key blocks
};
struct Flash128 {
  static constexpr int kFwdWarps = 4, kFwdMT = 2;  // forward: 4 warps × 32 query rows = 128-row blocks
  static constexpr int kBwdWarps = 8;              // backward: 8 warps × 16 keys = 128-key blocks
};

// Shared prefixes are a compile-time parameter of the kernels (kPrefix): the kPrefix = false
// instantiation, launched when AttnShape::prefix_of is null, is the plain path with none of the
// prefix bookkeeping (it must not cost the common case registers). Calls f(bool_constant<kPrefix>{}).
template <class F>
void dispatch_prefix(const AttnShape& s, F&& f) {
  if (s.prefix_of) f(std::true_type{});
  else f(std::false_type{});
}

// The flash launch dispatch shared by forward and backward: picks the tiling (AttnKernel), the padded
// head size, the mask and shared prefixes (on or off) at run time and calls
// launch(Tag<Layout<Tiling, kHS>>{}, bool_constant<kCausal>{}, bool_constant<kPrefix>{}) — one kernel
// instantiation per combination. Layout is FlashFwd or FlashBwd.
template <class T>
struct Tag {
  using type = T;
};
template <template <class, int> class Layout, class Tiling, class F>
void dispatch_hs_mask(const AttnShape& s, F&& launch) {
  auto with_mask = [&](auto layout) {
    dispatch_prefix(s, [&](auto prefix) {
      if (s.causal) launch(layout, std::true_type{}, prefix);
      else launch(layout, std::false_type{}, prefix);
    });
  };
  switch (padded_hs(s.HS)) {
    case 32: return with_mask(Tag<Layout<Tiling, 32>>{});
    case 64: return with_mask(Tag<Layout<Tiling, 64>>{});
    default: return with_mask(Tag<Layout<Tiling, 128>>{});
  }
}
template <template <class, int> class Layout, class F>
void dispatch_flash(AttnKernel k, const AttnShape& s, F&& launch) {
  if (k == AttnKernel::Flash128) dispatch_hs_mask<Layout, Flash128>(s, launch);
  else dispatch_hs_mask<Layout, Flash64>(s, launch);
}

// Opts `kernel` in to `bytes` of dynamic shared memory (past the default 48 KiB). The attribute belongs
// to the device, so `table` (a function-local static: one per kernel instantiation) sets it once per
// device and keeps the result.
template <class K>
void opt_in_smem(PerDevice<cudaError_t>& table, K* kernel, size_t bytes, const char* what) {
  const cudaError_t e = table.get([&](int) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  });
  check(e, what);
}

// ---- per-family launchers (T = float or bf16; p is filled in by attention.cu) ----
// attention_flash_fwd.cu: out, lse.
template <class T>
void flash_forward(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st);
// attention_flash_bwd.cu: the pre-pass (D = rowsum(dO∘O), dQ accumulator zeroed) that every backward
// runs first, then the flash backward itself (dK, dV, the dQ accumulator, and dq written from it).
template <class T>
void bwd_preprocess(const AttnShape& s, const Params& p, cudaStream_t st);
template <class T>
void flash_backward(AttnKernel k, const AttnShape& s, const Params& p, cudaStream_t st);
// attention_naive.cu: the fp32 reference; backward after bwd_preprocess.
template <class T>
void naive_forward(const AttnShape& s, const Params& p, cudaStream_t st);
template <class T>
void naive_backward(const AttnShape& s, const Params& p, cudaStream_t st);

}  // namespace cairn::cuda::attn
