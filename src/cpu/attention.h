// CPU attention implementations, one interface (the "ladder"): a naive reference with double
// accumulation, a GEMM-based one (Eigen: S = QKᵀ, masked softmax, PV) and a flash-style tiled one
// (online softmax over K/V tiles, O(N) extra memory, backward recomputes P from the saved lse).
// All work on the packed layout of backend.h: qkv[N, (NH+2·NKV)·HS] (q heads | k heads | v heads),
// out[N, NH·HS], lse[N,NH], segments given by cu_seqlens[B+1]; scale 1/√HS; `causal` masks keys
// after the query within each segment. NKV divides NH (grouped-query attention; NKV = NH: MHA).
// prefix_of[B] (null: none) marks shared prefixes as backend.h's SeqLayout does: segment s with
// prefix_of[s] = g ≥ 0 first reads all rows of segment g, then its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cairn::cpu {

enum class AttnImpl { Naive, Gemm, Flash };
const char* attn_impl_name(AttnImpl impl);
AttnImpl parse_attn_impl(const std::string& name);  // "naive" | "gemm" | "flash"

void attention_forward(AttnImpl impl, float* out, float* lse, const float* qkv, const int32_t* cu_seqlens,
                       int B, int NH, int NKV, int HS, bool causal, const int32_t* prefix_of = nullptr);
// dqkv[N, (NH+2·NKV)·HS] assigned.
void attention_backward(AttnImpl impl, float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const int32_t* cu_seqlens, int B, int NH, int NKV, int HS, bool causal,
                        const int32_t* prefix_of = nullptr);

// One query per segment (its last row): out[B, NH·HS], lse[B,NH]; dqkv fully assigned. Causal by nature.
void attention_last_forward(float* out, float* lse, const float* qkv, const int32_t* cu_seqlens, int B, int NH,
                            int NKV, int HS, const int32_t* prefix_of = nullptr);
void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             const int32_t* cu_seqlens, int B, int NH, int NKV, int HS,
                             const int32_t* prefix_of = nullptr);

// Extra bytes the implementation allocates beyond its inputs/outputs for this shape (for reports).
size_t attention_workspace_bytes(AttnImpl impl, const int32_t* cu_seqlens, int B, int NH, int HS, bool forward_only);

}  // namespace cairn::cpu
