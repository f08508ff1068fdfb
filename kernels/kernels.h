// Host-callable launchers of every CUDA kernel (device code lives in kernels/*.cu). All pointers are
// device pointers; every launch goes on `stream` and is checked. Shapes and conventions are those of
// include/cairn/backend.h (row-major, N packed tokens, parameter gradients +=, activation gradients =).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cairn/backend.h"

namespace cairn::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}
// After every launch: a bad configuration shows up here, not three kernels later.
#define CAIRN_CUDA_LAUNCH_CHECK(name) ::cairn::cuda::check(cudaGetLastError(), name)

// ---- elementwise.cu ----
void fill(float* x, float value, size_t n, cudaStream_t s);
// wpe / dwpe may be null (no learned positions: the llama family); pos is then not read.
void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                       int C, cudaStream_t s);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                        int C, cudaStream_t s);
void gelu_forward(float* out, const float* inp, size_t n, cudaStream_t s);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n, cudaStream_t s);
void add_inplace(float* x, const float* y, size_t n, cudaStream_t s);
void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C, cudaStream_t s);
void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C, cudaStream_t s);

// ---- llama.cu ----  the llama family's ops: SwiGLU (inp[N, 2F] rows = [gate | up], out[N, F];
// backward assigns dinp[N, 2F]) and rotary position embeddings, in place on the q and k heads of
// qkv[N, (NH+2·NKV)·HS] (Hugging Face's rotate-half layout; backward rotates by the opposite angle).
// RoPE needs an even head size ≤ kRopeMaxHS; others throw.
void swiglu_forward(float* out, const float* inp, int N, int F, cudaStream_t s);
void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F, cudaStream_t s);
constexpr int kRopeMaxHS = 256;
void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, cudaStream_t s);
void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, cudaStream_t s);

// ---- layernorm.cu ----  LayerNorm, RMSNorm and column sums (the column sums are deterministic: fixed
// row split, fixed-order second pass)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C, cudaStream_t s);
// dinp += ; dw += ; db +=.   scratch: at least layernorm_scratch_floats(N, C) floats.
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, float* scratch, cudaStream_t s);
size_t layernorm_scratch_floats(int N, int C);
// RMSNorm (llama): out = inp·rstd·w, rstd[N] = 1/√(mean inp² + eps) saved.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps,
                     cudaStream_t s);
// dinp += ; dw +=.   scratch: at least layernorm_scratch_floats(N, C) floats.
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int C, float* scratch, cudaStream_t s);
// db[C] += Σ_n dout[n, C]   (bias gradient of a linear layer); scratch as above
void column_sum_add(float* db, const float* dout, int N, int C, float* scratch, cudaStream_t s);

// ---- loss.cu ----  drewards[B,H] assigned (B = 1 + the largest sequence index in pairs);
// stats: kLossStatsDoubles doubles on the device; scratch: 4·P doubles.
constexpr int kLossStatsDoubles = 5;  // loss, bt_loss, n_correct, n_decided, total weight
void bt_loss(float* drewards, double* stats, double* scratch, const float* rewards, const PairTarget* pairs, int P,
             int H, const float* head_weights, float center_coef, cudaStream_t s);

// ---- adamw.cu ----
// partials: kSumSquaresBlocks doubles; their (fixed-order) sum is Σ x². The block count is a fixed
// constant, not derived from the device's SM count: it fixes the partition of x and so the order of
// the summation, which keeps the norm bit-identical from run to run and device to device.
constexpr int kSumSquaresBlocks = 264;
void sum_squares_partials(double* partials, const float* x, size_t n, cudaStream_t s);
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h, cudaStream_t s);

// ---- attention.cu (kernels in attention_*.cu) ----  scaled dot-product attention on packed
// variable-length sequences, grouped-query: NH query heads read NKV key/value heads (NKV divides NH;
// query head h reads key/value head h / (NH/NKV); NKV = NH is plain multi-head attention).
//
// q: rows of `stride_q` elements, query head h at columns h·HS ..; k, v: rows of stride_k / stride_v,
// key/value head g at columns g·HS ..; out, dout, dq like q (NH heads), dk, dv like k, v (NKV heads).
// Sequence b owns rows [cu_seqlens[b], cu_seqlens[b+1]). The model passes its qkv[N, (NH+2·NKV)·HS]
// as q = qkv, k = qkv + AttnShape::k_col(), v = qkv + AttnShape::v_col(), every stride qkv_cols().
// Shared prefixes: with AttnShape::prefix_of (the layout of SeqLayout::prefix_of, backend.h) a segment
// b with prefix_of[b] = g ≥ 0 reads every row of segment g before its own (causal) rows; out, lse and
// dq stay per row, and the prefix's dk, dv gather the terms of every segment of its group. The kernels
// trust the layout: check it on the host first (check_prefix_layout). Null: independent segments.
enum class AttnDtype { F32, BF16 };
enum class AttnKernel {
  Naive,     // one thread per query (forward, dQ) or key (dK, dV) row, fp32 throughout: the reference
  Flash64,   // tiled, online softmax, bf16 tensor-core MMA, fp32 accumulation, O(N) extra memory;
             // 64-row query blocks (16 rows a warp) forward, 64-key blocks backward
  Flash128,  // the same with 128-row query blocks (32 rows a warp) and 128-key blocks (8 warps)
};
constexpr AttnKernel kAttnKernels[] = {AttnKernel::Naive, AttnKernel::Flash64, AttnKernel::Flash128};
constexpr AttnKernel kAttnBest = AttnKernel::Flash128;  // what the backend runs (see bench/gpu_check.sh)
const char* attn_kernel_name(AttnKernel k);

struct AttnShape {
  const int32_t* cu_seqlens = nullptr;  // (B+1) device
  const int32_t* prefix_of = nullptr;   // (B) device, or null: shared prefixes (see above)
  int B = 0, NH = 0, HS = 0, max_len = 0, n_tokens = 0;
  int NKV = 0;  // key/value heads: 1 ≤ NKV, NH % NKV == 0 (NKV = NH: multi-head); anything else throws
  bool causal = true;
  int group() const { return NKV > 0 ? NH / NKV : 0; }  // query heads per key/value head
  // Columns of the model's packed qkv row [q heads | k heads | v heads]: where the k and v heads start.
  long k_col() const { return long(NH) * HS; }
  long v_col() const { return long(NH + NKV) * HS; }
  long qkv_cols() const { return long(NH + 2 * NKV) * HS; }
};
struct AttnFwd {
  const void *q, *k, *v;
  long stride_q, stride_k, stride_v;
  void* out;
  long stride_out;
  float* lse;  // [N, NH], natural log of Σ exp(scaled scores)
};
struct AttnBwd {
  const void *q, *k, *v, *out, *dout;
  long stride_q, stride_k, stride_v, stride_out, stride_dout;
  const float* lse;
  void *dq, *dk, *dv;  // assigned
  long stride_dq, stride_dk, stride_dv;
  float* workspace;  // attention_bwd_workspace_floats(shape) floats
};
// Head sizes 1..128 (bf16 storage: multiples of 8 with 16-byte aligned rows); others throw.
size_t attention_bwd_workspace_floats(const AttnShape& s);
void attention_forward(AttnKernel k, AttnDtype t, const AttnShape& s, const AttnFwd& a, cudaStream_t st);
void attention_backward(AttnKernel k, AttnDtype t, const AttnShape& s, const AttnBwd& a, cudaStream_t st);
// Throws std::invalid_argument unless host_prefix_of[B] is a group layout (SeqLayout::prefix_of): each
// segment has no prefix (−1) or continues the segment that opened its group.
void check_prefix_layout(const int32_t* host_prefix_of, int B);

// ---- attention_last.cu ----  the last query of each sequence only (fp32), grouped-query as above,
// q, k, v read from the model's qkv[N, (NH+2·NKV)·HS]: out[B, NH·HS], lse[B, NH]; backward assigns
// ALL of dqkv[N, (NH+2·NKV)·HS] (zero where the last query does not reach). prefix_of (device, or null)
// as AttnShape::prefix_of: a continuing segment's query also reads every row of its prefix.
void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu_seqlens,
                            const int32_t* prefix_of, int B, int NH, int NKV, int HS, cudaStream_t s);
void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu_seqlens, const int32_t* prefix_of, int B, int N, int NH, int NKV,
                             int HS, cudaStream_t s);

}  // namespace cairn::cuda
