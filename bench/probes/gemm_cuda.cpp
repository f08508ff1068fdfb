// The device's dense bf16 GEMM rate through cuBLAS (random operands, fp32 accumulation), measured in
// the same process as a benchmark so its results can be quoted as a fraction of it.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/probes/probes.h"

namespace cairn {

double cuda_bf16_gemm_tflops(int n, int reps) {
  auto ok = [](cudaError_t e, const char* w) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("GEMM probe: ") + w + ": " + cudaGetErrorString(e));
  };
  const size_t nn = size_t(n) * n;
  std::vector<__nv_bfloat16> h(nn);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : h) x = __float2bfloat16(u(rng));
  __nv_bfloat16 *a, *b, *c;
  ok(cudaMalloc(&a, nn * 2), "malloc");
  ok(cudaMalloc(&b, nn * 2), "malloc");
  ok(cudaMalloc(&c, nn * 2), "malloc");
  ok(cudaMemcpy(a, h.data(), nn * 2, cudaMemcpyHostToDevice), "copy");
  ok(cudaMemcpy(b, h.data(), nn * 2, cudaMemcpyHostToDevice), "copy");
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("GEMM probe: cublasCreate failed");
  const float alpha = 1.0f, beta = 0.0f;
  auto run = [&] {
    if (cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &beta, c,
                     CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("GEMM probe: cublasGemmEx failed");
  };
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) run();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0);
    run();
    cudaEventRecord(e1);
    ok(cudaEventSynchronize(e1), "GEMM");
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  const double med = ms[ms.size() / 2];
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cublasDestroy(handle);
  cudaFree(a), cudaFree(b), cudaFree(c);
  return 2.0 * n * double(n) * n / (med * 1e-3) / 1e12;
}

}  // namespace cairn
