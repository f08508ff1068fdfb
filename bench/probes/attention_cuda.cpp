// GPU attention benchmark (see bench/probes/probes.h). Layout as FlashAttention's: q, k, v, out, dout
// and the gradients are [B·N, H·d] row-major (token-major, heads side by side), bf16 or fp32.
// Validation tolerances (relative L2 against the naive fp32-accumulating kernel on the same inputs):
// output 2e-2, gradients 5e-2; lse |err| ≤ 1e-3·max(1, |lse|).
#include "bench/probes/probes.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "util/rng.h"

namespace cairn {
namespace {

using cuda::check;

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(b) { check(cudaMalloc(&p, std::max<size_t>(b, 16)), "bench allocation"); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
};

// Host float values → device storage of the element type (bf16 rounding to nearest even).
void upload(DevBuf& d, const std::vector<float>& h, bool bf16) {
  if (!bf16) return check(cudaMemcpy(d.p, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "bench upload");
  std::vector<__nv_bfloat16> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = __float2bfloat16(h[i]);
  check(cudaMemcpy(d.p, b.data(), b.size() * 2, cudaMemcpyHostToDevice), "bench upload");
}
std::vector<float> download(const DevBuf& d, size_t n, bool bf16) {
  std::vector<float> h(n);
  check(cudaDeviceSynchronize(), "bench");
  if (!bf16) {
    check(cudaMemcpy(h.data(), d.p, n * 4, cudaMemcpyDeviceToHost), "bench download");
    return h;
  }
  std::vector<__nv_bfloat16> b(n);
  check(cudaMemcpy(b.data(), d.p, n * 2, cudaMemcpyDeviceToHost), "bench download");
  for (size_t i = 0; i < n; ++i) h[i] = __bfloat162float(b[i]);
  return h;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref, double* max_abs) {
  double num = 0, den = 0, mx = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - ref[i];
    if (!std::isfinite(a[i])) {
      *max_abs = INFINITY;
      return INFINITY;
    }
    num += d * d, den += double(ref[i]) * ref[i], mx = std::max(mx, std::fabs(d));
  }
  *max_abs = std::max(*max_abs, mx);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double median_ms(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

std::string cuda_device_name() {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return p.name;
}

std::vector<CudaAttnResult> bench_attention_cuda(const CudaAttnCase& c) {
  const size_t T = size_t(c.batch) * c.seq_len, C = size_t(c.heads) * c.head_dim, es = c.bf16 ? 2 : 4;
  const cuda::AttnDtype dt = c.bf16 ? cuda::AttnDtype::BF16 : cuda::AttnDtype::F32;
  std::vector<int32_t> cu(c.batch + 1);
  for (int b = 0; b <= c.batch; ++b) cu[b] = b * c.seq_len;
  DevBuf d_cu(cu.size() * 4);
  check(cudaMemcpy(d_cu.p, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice), "bench upload");
  cuda::AttnShape s;
  s.cu_seqlens = static_cast<const int32_t*>(d_cu.p), s.B = c.batch, s.NH = c.heads, s.NKV = c.heads;  // MHA
  s.HS = c.head_dim;
  s.max_len = c.seq_len, s.n_tokens = static_cast<int>(T), s.causal = c.causal;

  DevBuf q(T * C * es), k(T * C * es), v(T * C * es), dout(T * C * es);
  {
    Rng r(c.seed);
    std::vector<float> h(T * C);
    for (DevBuf* b : {&q, &k, &v, &dout}) {
      for (auto& x : h) x = static_cast<float>(2 * r.uniform() - 1);
      upload(*b, h, c.bf16);
    }
  }
  const long ld = static_cast<long>(C);
  const size_t ws_floats = cuda::attention_bwd_workspace_floats(s);
  DevBuf ws(ws_floats * 4);

  struct Outputs {
    DevBuf out, lse, dq, dk, dv;
    Outputs(size_t tc, size_t th, size_t es) : out(tc * es), lse(th * 4), dq(tc * es), dk(tc * es), dv(tc * es) {}
  };
  auto run = [&](cuda::AttnKernel kern, Outputs& o, bool bwd) {
    cuda::attention_forward(kern, dt, s, {q.p, k.p, v.p, ld, ld, ld, o.out.p, ld, static_cast<float*>(o.lse.p)}, 0);
    if (bwd)
      cuda::attention_backward(kern, dt, s,
                               {q.p, k.p, v.p, o.out.p, dout.p, ld, ld, ld, ld, ld, static_cast<float*>(o.lse.p), o.dq.p,
                                o.dk.p, o.dv.p, ld, ld, ld, static_cast<float*>(ws.p)},
                               0);
  };
  auto poison = [&](Outputs& o) {
    for (DevBuf* b : {&o.out, &o.lse, &o.dq, &o.dk, &o.dv}) check(cudaMemset(b->p, 0xff, b->bytes), "poison");
  };

  // 1. the reference
  Outputs ref(T * C, T * c.heads, es);
  poison(ref);
  run(cuda::AttnKernel::Naive, ref, c.backward);
  check(cudaDeviceSynchronize(), "naive attention");
  const auto r_out = download(ref.out, T * C, c.bf16), r_lse = download(ref.lse, T * c.heads, false);
  std::vector<float> r_dq, r_dk, r_dv;
  if (c.backward) r_dq = download(ref.dq, T * C, c.bf16), r_dk = download(ref.dk, T * C, c.bf16), r_dv = download(ref.dv, T * C, c.bf16);

  std::vector<CudaAttnResult> results;
  cudaEvent_t e0, e1, e2;
  cudaEventCreate(&e0), cudaEventCreate(&e1), cudaEventCreate(&e2);
  for (cuda::AttnKernel kern : cuda::kAttnKernels) {
    const bool naive = kern == cuda::AttnKernel::Naive;
    CudaAttnResult res;
    res.impl = cuda::attn_kernel_name(kern);
    res.extra_bytes = T * c.heads * 4 + (c.backward ? ws_floats * 4 : 0);
    if (naive) res.extra_bytes = T * c.heads * 4 * (c.backward ? 2 : 1);
    Outputs o(T * C, T * c.heads, es);
    if (!naive) {  // 2. validate on the same inputs
      poison(o);
      run(kern, o, c.backward);
      check(cudaDeviceSynchronize(), "flash attention");
      res.err_out = rel_l2(download(o.out, T * C, c.bf16), r_out, &res.max_abs_out);
      const auto lse = download(o.lse, T * c.heads, false);
      for (size_t i = 0; i < lse.size(); ++i) {
        const double e = std::fabs(double(lse[i]) - r_lse[i]);
        res.max_abs_lse = std::isfinite(e) ? std::max(res.max_abs_lse, e) : INFINITY;
        if (!(e <= 1e-3 * std::max(1.0, std::fabs(double(r_lse[i]))))) res.valid = false;
      }
      if (c.backward) {
        res.err_dq = rel_l2(download(o.dq, T * C, c.bf16), r_dq, &res.max_abs_grad);
        res.err_dk = rel_l2(download(o.dk, T * C, c.bf16), r_dk, &res.max_abs_grad);
        res.err_dv = rel_l2(download(o.dv, T * C, c.bf16), r_dv, &res.max_abs_grad);
      }
      res.valid = res.valid && res.err_out <= 2e-2 && res.err_dq <= 5e-2 && res.err_dk <= 5e-2 && res.err_dv <= 5e-2;
    }
    // 3. time (the reference only when asked)
    if (res.valid && (!naive || c.time_naive)) {
      const int warm = naive ? 0 : c.warmup, reps = naive ? 1 : c.repeats;
      std::vector<float> tf, tb;
      for (int i = 0; i < warm + reps; ++i) {
        cudaEventRecord(e0);
        run(kern, o, false);
        cudaEventRecord(e1);
        if (c.backward) {
          cuda::attention_backward(kern, dt, s,
                                   {q.p, k.p, v.p, o.out.p, dout.p, ld, ld, ld, ld, ld, static_cast<float*>(o.lse.p),
                                    o.dq.p, o.dk.p, o.dv.p, ld, ld, ld, static_cast<float*>(ws.p)},
                                   0);
        }
        cudaEventRecord(e2);
        check(cudaEventSynchronize(e2), "attention timing");
        float a = 0, b = 0;
        cudaEventElapsedTime(&a, e0, e1);
        cudaEventElapsedTime(&b, e0, e2);
        if (i >= warm) tf.push_back(a), tb.push_back(b);
      }
      res.fwd_ms = median_ms(tf);
      if (c.backward) res.fwd_bwd_ms = median_ms(tb);
    }
    results.push_back(res);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1), cudaEventDestroy(e2);
  return results;
}

}  // namespace cairn
