// CPU kernels of every op except attention (src/cpu/attention.h), on host buffers. OpenMP threads
// split rows (or columns for reductions); every output element is written by one thread in a fixed
// order, so results are bit-identical for a given thread count. Gradient conventions as backend.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cairn/backend.h"

namespace cairn::cpu {

// linear.cpp — Eigen GEMMs. Forward: fixed-shape single-threaded tile products, so a row's result
// depends on that row alone (not on N, its position or the thread count). Backward: threaded by
// Eigen (blocking fixed per thread count, so deterministic for a given count)
void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O);
void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int I, int O);
// db[O] += Σ_n dout[n,:] (fp32, the backward of either precision)
void bias_backward(float* db, const float* dout, int N, int O);

// linear_bf16.cpp — the same two ops with bf16 operands and fp32 accumulation (--cpu-math bf16), on
// oneDNN; the same row invariance and determinism. bf16_gemm_unavailable(): "" when usable here, else
// why not (a build without oneDNN, a CPU without a bf16 matmul); bf16_gemm_impl(): oneDNN's kernel.
std::string bf16_gemm_unavailable();
std::string bf16_gemm_impl();
void linear_forward_bf16(float* out, const float* inp, const float* W, const float* b, int N, int I, int O);
void linear_backward_bf16(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W,
                          int N, int I, int O);

// layernorm.cpp
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C);

// llama_ops.cpp — RMSNorm, SwiGLU, rotary position embeddings (conventions of backend.h)
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int C);
void swiglu_forward(float* out, const float* inp, int N, int F);
void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F);
void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta);
void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta);

// elementwise.cpp
void gelu_forward(float* out, const float* inp, size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);
void add_inplace(float* x, const float* y, size_t n);
void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                       int C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                        int C);
void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C);
void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C);

// loss.cpp — Bradley–Terry with soft labels, margin, weights, heads and centering (docs/model.md#loss)
LossStats bt_loss(float* drewards, const float* rewards, const PairTarget* pairs, int P, int H,
                  const float* head_weights, float center_coef);

// adamw.cpp
double sum_squares(const float* x, size_t n);
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h);

}  // namespace cairn::cpu
