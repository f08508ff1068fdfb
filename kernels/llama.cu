// The llama family's ops: SwiGLU and rotary position embeddings (RoPE), forward and backward.
//   SwiGLU  rows inp[n] = [a (F) | u (F)]:  y = silu(a)·u,  silu(a) = a·σ(a),  σ(a) = 1/(1 + e^(−a))
//           backward: silu'(a) = σ(a) + a·σ(a)(1 − σ(a)) = σ(a)·(1 + a·(1 − σ(a))), so
//                     da = dy·u·σ(a)·(1 + a·(1 − σ(a))),  du = dy·silu(a)   (dinp assigned)
//   RoPE    Hugging Face's rotate-half layout, in place on the q and k heads of qkv[N, (NH+2·NKV)·HS]
//           (the NH + NKV heads at the start of a row; v untouched): for each head and i < HS/2,
//             (x_i, x_{i+HS/2}) ← (x_i·cos a − x_{i+HS/2}·sin a,  x_{i+HS/2}·cos a + x_i·sin a)
//           with a = float(pos[n])·inv_freq_i, inv_freq_i = 1/θ^((2i)/HS) (exponent and power in fp32, as
//           HF computes it). The map is the rotation R(a) of each pair, so the backward is Rᵀ = R(−a):
//           the same kernel with sin negated, in place on dqkv.
// Thread mapping: one block per row (grid-stride over rows), threads over the row's columns (SwiGLU:
// f < F; RoPE: (head, i) pairs, i fastest, so a warp touches contiguous columns).
// Precision: fp32 throughout, with the CPU backend's formulas: expf, IEEE division, sincosf (full
// range reduction, no fast math). inv_freq is computed on the host with the CPU backend's expression
// (std::pow in fp32) and passed by value, so both backends rotate by bit-identical angles: at
// position 8192 one ulp of inv_freq would already move the angle by ~5e-4.
#include <cmath>
#include <stdexcept>

#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr int kThreads = 256, kRopeThreads = 128, kMaxBlocks = 65535 * 8;

int row_blocks(int N) { return N < kMaxBlocks ? N : kMaxBlocks; }
int row_threads(int cols) { return cols >= kThreads ? kThreads : ((cols + 31) / 32) * 32; }

__global__ void swiglu_forward_kernel(float* out, const float* inp, int N, int F) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float* a = inp + size_t(n) * 2 * F;
    const float* u = a + F;
    float* y = out + size_t(n) * F;
    for (int f = threadIdx.x; f < F; f += blockDim.x) y[f] = a[f] / (1.0f + expf(-a[f])) * u[f];
  }
}

__global__ void swiglu_backward_kernel(float* dinp, const float* inp, const float* dout, int N, int F) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float* a = inp + size_t(n) * 2 * F;
    const float* u = a + F;
    const float* dy = dout + size_t(n) * F;
    float* da = dinp + size_t(n) * 2 * F;
    float* du = da + F;
    for (int f = threadIdx.x; f < F; f += blockDim.x) {
      const float x = a[f], s = 1.0f / (1.0f + expf(-x));
      da[f] = dy[f] * u[f] * s * (1.0f + x * (1.0f - s));
      du[f] = dy[f] * x * s;
    }
  }
}

struct RopeFreqs {
  float inv_freq[kRopeMaxHS / 2];
};

// The row's angles first (one sincosf per i, shared by all its heads), then the rotations.
template <bool kInverse>
__global__ void rope_kernel(float* qkv, const int32_t* pos, int N, int heads, int HS, long W, RopeFreqs f) {
  __shared__ float s_cos[kRopeMaxHS / 2], s_sin[kRopeMaxHS / 2];
  const int half = HS / 2;
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float p = static_cast<float>(pos[n]);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      float sn, cs;
      sincosf(p * f.inv_freq[i], &sn, &cs);
      s_cos[i] = cs, s_sin[i] = kInverse ? -sn : sn;
    }
    __syncthreads();
    float* row = qkv + size_t(n) * W;
    for (int j = threadIdx.x; j < heads * half; j += blockDim.x) {
      const int hh = j / half, i = j - hh * half;
      float* x = row + size_t(hh) * HS;
      const float x0 = x[i], x1 = x[i + half], c = s_cos[i], s = s_sin[i];
      x[i] = x0 * c - x1 * s;
      x[i + half] = x1 * c + x0 * s;
    }
    __syncthreads();  // s_cos, s_sin are rewritten for the next row
  }
}

RopeFreqs rope_freqs(int HS, float theta) {
  RopeFreqs f{};
  for (int i = 0; i < HS / 2; ++i)
    f.inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(HS));
  return f;
}

template <bool kInverse>
void rope(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, cudaStream_t s,
          const char* what) {
  if (HS < 2 || HS > kRopeMaxHS || HS % 2 || NH < 1 || NKV < 1)
    throw std::invalid_argument("CUDA RoPE: the head size must be even and at most 256, with >= 1 q and kv heads");
  if (N == 0) return;
  rope_kernel<kInverse><<<row_blocks(N), kRopeThreads, 0, s>>>(qkv, pos, N, NH + NKV, HS, long(NH + 2 * NKV) * HS,
                                                               rope_freqs(HS, theta));
  CAIRN_CUDA_LAUNCH_CHECK(what);
}

}  // namespace

void swiglu_forward(float* out, const float* inp, int N, int F, cudaStream_t s) {
  if (N == 0 || F == 0) return;
  swiglu_forward_kernel<<<row_blocks(N), row_threads(F), 0, s>>>(out, inp, N, F);
  CAIRN_CUDA_LAUNCH_CHECK("swiglu_forward");
}

void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F, cudaStream_t s) {
  if (N == 0 || F == 0) return;
  swiglu_backward_kernel<<<row_blocks(N), row_threads(F), 0, s>>>(dinp, inp, dout, N, F);
  CAIRN_CUDA_LAUNCH_CHECK("swiglu_backward");
}

void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, cudaStream_t s) {
  rope<false>(qkv, pos, N, NH, NKV, HS, theta, s, "rope_forward");
}

void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta, cudaStream_t s) {
  rope<true>(dqkv, pos, N, NH, NKV, HS, theta, s, "rope_backward");
}

}  // namespace cairn::cuda
