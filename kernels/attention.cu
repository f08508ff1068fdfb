// Scaled dot-product attention on packed variable-length sequences: the GPU ladder, and the public
// entry points of kernels/kernels.h that dispatch to it.
//
// Grouped-query: NH query heads read NKV key/value heads (query head h reads h / (NH/NKV)); NKV = NH is
// plain multi-head attention.
//
//   Naive  one thread per query row (forward, dQ) or key row (dK, dV); fp32 loads and accumulation,
//          online softmax. Slow and obviously right: the reference the flash kernels are checked
//          against on the device (tests/gpu, cairn bench attention --device cuda).   attention_naive.cu
//   Flash  FlashAttention-2 style. Forward: a block of kWarps warps owns 16·kMT·kWarps query rows of
//          one (sequence, query head); the K/V tiles of its key/value head, 64 keys each, stream
//          through shared memory (cp.async, double
//          buffered); each warp computes S = Q·Kᵀ for its rows with mma.sync m16n8k16 (bf16 in,
//          fp32 accumulate), keeps the running max m and sum l, rescales O, and feeds P (bf16,
//          straight from the accumulator registers) into O += P·V. Extra memory: lse only.
//                                                                                 attention_flash_fwd.cu
//          Backward: a block of kWarps warps owns 16·kWarps keys (16 per warp) of one key/value head
//          and walks the query tiles of each query head of its group in turn, recomputing P from the
//          saved lse:
//            Sᵀ = K·Qᵀ,  Pᵀ = exp(scale·Sᵀ − lse),  dPᵀ = V·dOᵀ,  dSᵀ = Pᵀ∘(dPᵀ − D),  D = rowsum(dO∘O)
//            dV += Pᵀ·dO,  dK += scale·dSᵀ·Q   (registers, summed over the group, written once at the end)
//            dQ += scale·dS·K                  (dSᵀ staged in shared memory; fp32 atomics into a workspace)
//          Workspace: dQ accumulator [N, NH·HS] + D [N, NH], fp32.                attention_flash_bwd.cu
//          Tilings (attention_common.cuh): Flash64 = 64-row query blocks (4 warps × 16 rows) and 64-key
//          blocks (4 warps); Flash128 = 128-row query blocks (4 warps × 32 rows), 128-key blocks (8 warps).
//   Last   the last query of each sequence only (fp32), for the reward head.        attention_last.cu
//
// Shared prefixes (AttnShape::prefix_of; null: every segment independent, the kernels' plain path): a
// segment continuing a prefix reads the prefix's keys in full before its own causal ones — forward, a
// query tile walks the prefix's key tiles, then its own; backward, the owner of a prefix key (thread,
// warp or block) also walks every query of the segments continuing it, so the prefix's dK, dV are
// summed in one place in a fixed order (each kernel's header says how). dQ, out and lse stay per row.
// Prefix support is a compile-time parameter of every kernel (kPrefix), chosen at launch on prefix_of
// != null: the kPrefix = false instantiations are the plain path, the same loops and arithmetic as
// without the feature (no extra registers for the common, unshared case).
//
// Inputs are fp32 (the model's qkv) or bf16 (the benchmark); fp32 is rounded to bf16 when a tile is
// staged in shared memory. Softmax statistics, accumulators, lse and dQ are fp32 throughout.
// Exponentials use exp2 with the scale folded in: scale_log2 = log2(e)/√HS.
// Head sizes up to 128 run on tiles padded to 32, 64 or 128 columns (zero-filled).
//
// This file holds host code only: the Params of a call, the checks, and the dispatch over kernel,
// dtype and pass; each kernel family is instantiated and launched in its own file.
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/attention_common.cuh"

namespace cairn::cuda {
namespace {

using attn::Params;

Params make_params(const AttnShape& s) {
  Params p{};
  p.cu = s.cu_seqlens, p.prefix_of = s.prefix_of, p.B = s.B, p.NH = s.NH, p.NKV = s.NKV, p.group = s.group(), p.hs = s.HS;
  p.group_magic = attn::group_magic(p.group);
  p.scale = 1.0f / sqrtf(static_cast<float>(s.HS));
  p.scale_log2 = p.scale * attn::kLog2e;
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

template <class T>
void forward_typed(AttnKernel k, const AttnShape& s, const AttnFwd& a, cudaStream_t st) {
  Params p = make_params(s);
  p.q = a.q, p.k = a.k, p.v = a.v, p.sq = a.stride_q, p.sk = a.stride_k, p.sv = a.stride_v;
  p.o = a.out, p.so = a.stride_out, p.lse = a.lse;
  p.vec = rows_vectorizable<T>(s, {{a.q, a.stride_q}, {a.k, a.stride_k}, {a.v, a.stride_v}});
  if (std::is_same_v<T, bf16> && !p.vec)
    throw std::invalid_argument("bf16 attention needs 16-byte aligned rows and a head size divisible by 8");
  if (k == AttnKernel::Naive) attn::naive_forward<T>(s, p, st);
  else attn::flash_forward<T>(k, s, p, st);
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
  attn::bwd_preprocess<T>(s, p, st);
  if (k == AttnKernel::Naive) attn::naive_backward<T>(s, p, st);
  else attn::flash_backward<T>(k, s, p, st);
}

void check_shape(const AttnShape& s) {
  attn::check_head_size(s.HS);
  if (s.B < 0 || s.NH < 1 || s.max_len < 0) throw std::invalid_argument("CUDA attention: bad shape");
  if (s.NKV < 1 || s.NH % s.NKV)
    throw std::invalid_argument("CUDA attention: the query heads must be a multiple of the key/value heads (NKV >= 1)");
  if (s.NH > 65535) throw std::invalid_argument("CUDA attention: at most 65535 query heads");  // grid y; kv_head
  if (s.B > 65535)  // grid z of the flash and naive kernels
    throw std::invalid_argument("CUDA attention: at most 65535 sequences (segments) in one batch, got " +
                                std::to_string(s.B) + "; use a smaller batch");
}

}  // namespace

const char* attn_kernel_name(AttnKernel k) {
  return k == AttnKernel::Naive ? "naive" : k == AttnKernel::Flash64 ? "flash64" : "flash128";
}

void check_prefix_layout(const int32_t* host_prefix_of, int B) {
  if (!host_prefix_of) throw std::invalid_argument("CUDA attention: shared prefixes without their host copy");
  for (int b = 0, leader = -1; b < B; ++b) {
    const int g = host_prefix_of[b];
    if (g < 0) leader = b;
    else if (g != leader)
      throw std::invalid_argument("CUDA attention: segment " + std::to_string(b) + " continues prefix " +
                                  std::to_string(g) + ", which is not the segment that opens its group");
  }
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

}  // namespace cairn::cuda
