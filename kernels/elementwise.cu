// Elementwise and row-copy kernels: fill, GELU (tanh form), residual add, embeddings (learned
// positions optional: wpe / dwpe null for the llama family), row gather / scatter. Grid-stride loops,
// one thread per element (memory-bound; coalesced across the warp).
//   gelu(x)  = ½x(1 + tanh u),  u = √(2/π)(x + 0.044715x³)
//   gelu'(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
// Embedding backward scatters with atomicAdd (a token id may repeat within a batch), so its sums are
// not bit-reproducible run to run; everything else here is.
#include "kernels/common.cuh"
#include "kernels/kernels.h"

namespace cairn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;

int blocks_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 8 ? (b ? b : 1) : 65535 * 8);
}

__global__ void fill_kernel(float* x, float value, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) x[i] = value;
}

__global__ void gelu_forward_kernel(float* out, const float* inp, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kGeluC * x * x * x)));
  }
}

__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float x = inp[i];
    const float t = tanhf(kSqrt2OverPi * (x + kGeluC * x * x * x));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
  }
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) x[i] += y[i];
}

// one block row per token: out[n, :] = wte[ids[n], :] + wpe[pos[n], :]   (wpe null: wte[ids[n], :])
__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const int32_t* pos, const float* wte,
                                         const float* wpe, int C) {
  const int n = blockIdx.x;
  const float* te = wte + size_t(ids[n]) * C;
  if (!wpe) {
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[size_t(n) * C + c] = te[c];
    return;
  }
  const float* pe = wpe + size_t(pos[n]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[size_t(n) * C + c] = te[c] + pe[c];
}

__global__ void embedding_backward_kernel(float* dwte, float* dwpe, const float* dout, const int32_t* ids,
                                          const int32_t* pos, int C) {
  const int n = blockIdx.x;
  float* te = dwte + size_t(ids[n]) * C;
  if (!dwpe) {
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(te + c, dout[size_t(n) * C + c]);
    return;
  }
  float* pe = dwpe + size_t(pos[n]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = dout[size_t(n) * C + c];
    atomicAdd(te + c, d);
    atomicAdd(pe + c, d);
  }
}

__global__ void gather_rows_kernel(float* out, const float* inp, const int32_t* rows, int C) {
  const int r = blockIdx.x;
  const float* src = inp + size_t(rows[r]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[size_t(r) * C + c] = src[c];
}

__global__ void scatter_add_rows_kernel(float* dinp, const float* dout, const int32_t* rows, int C) {
  const int r = blockIdx.x;
  float* dst = dinp + size_t(rows[r]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dst + c, dout[size_t(r) * C + c]);
}

int row_threads(int C) { return C >= 256 ? 256 : ((C + 31) / 32) * 32; }

}  // namespace

void fill(float* x, float value, size_t n, cudaStream_t s) {
  if (n == 0) return;
  if (value == 0.0f) return check(cudaMemsetAsync(x, 0, n * sizeof(float), s), "fill");
  fill_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, value, n);
  CAIRN_CUDA_LAUNCH_CHECK("fill");
}

void gelu_forward(float* out, const float* inp, size_t n, cudaStream_t s) {
  if (n == 0) return;
  gelu_forward_kernel<<<blocks_for(n), kThreads, 0, s>>>(out, inp, n);
  CAIRN_CUDA_LAUNCH_CHECK("gelu_forward");
}

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n, cudaStream_t s) {
  if (n == 0) return;
  gelu_backward_kernel<<<blocks_for(n), kThreads, 0, s>>>(dinp, inp, dout, n);
  CAIRN_CUDA_LAUNCH_CHECK("gelu_backward");
}

void add_inplace(float* x, const float* y, size_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  CAIRN_CUDA_LAUNCH_CHECK("add_inplace");
}

void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                       int C, cudaStream_t s) {
  if (N == 0) return;
  embedding_forward_kernel<<<N, row_threads(C), 0, s>>>(out, ids, pos, wte, wpe, C);
  CAIRN_CUDA_LAUNCH_CHECK("embedding_forward");
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                        int C, cudaStream_t s) {
  if (N == 0) return;
  embedding_backward_kernel<<<N, row_threads(C), 0, s>>>(dwte, dwpe, dout, ids, pos, C);
  CAIRN_CUDA_LAUNCH_CHECK("embedding_backward");
}

void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C, cudaStream_t s) {
  if (R == 0) return;
  gather_rows_kernel<<<R, row_threads(C), 0, s>>>(out, inp, rows, C);
  CAIRN_CUDA_LAUNCH_CHECK("gather_rows");
}

void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C, cudaStream_t s) {
  if (R == 0) return;
  scatter_add_rows_kernel<<<R, row_threads(C), 0, s>>>(dinp, dout, rows, C);
  CAIRN_CUDA_LAUNCH_CHECK("scatter_add_rows");
}

}  // namespace cairn::cuda
