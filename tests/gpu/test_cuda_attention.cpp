// The GPU attention ladder (kernels/attention*.cu) against the CPU reference (src/cpu naive: fp32
// inputs, double accumulation; itself checked against the double reference and finite differences
// in tests/test_attention.cpp). Packed batch of awkward lengths (1, 31, 33, 127, 200), head sizes
// 24/32/64/128, causal and not, random inputs in [-1, 1] and ±50 logits; outputs pre-filled with NaN.
//
// The flash kernels multiply bf16 operands, so they are compared with the reference run on the same
// bf16-rounded inputs: what remains is the rounding of P and dS to bf16 and the fp32 accumulation.
// Tolerances: naive ‖err‖/‖ref‖ ≤ 1e-5 (fp32 vs double accumulation); flash output ≤ 1e-2, lse
// |err| ≤ 1e-4 + 1e-5·|lse|, gradients ≤ 2e-2.
#include <gtest/gtest.h>

#include <cstring>
#include <ostream>

#include "cpu/attention.h"
#include "gpu/gpu_util.h"
#include "kernels/kernels.h"

namespace cairn {
using test::rand_vec;
using test::rel_l2;

namespace {

float bf16_round(float x) {  // round to nearest even, as __float2bfloat16_rn
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}
std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    const float r = bf16_round(v[i]);
    std::memcpy(&u, &r, 4);
    b[i] = static_cast<uint16_t>(u >> 16);
  }
  return b;
}
std::vector<float> from_bf16_bits(const std::vector<uint16_t>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const uint32_t u = uint32_t(b[i]) << 16;
    std::memcpy(&v[i], &u, 4);
  }
  return v;
}

template <class T>
T* dev_upload(const std::vector<T>& h) {
  T* p = nullptr;
  cuda::check(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(h.size(), 1) * sizeof(T)), "test malloc");
  cuda::check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "test upload");
  return p;
}
template <class T>
std::vector<T> dev_download(const T* p, size_t n) {
  std::vector<T> h(n);
  cuda::check(cudaDeviceSynchronize(), "test sync");
  cuda::check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "test download");
  return h;
}

struct Case {
  std::vector<int32_t> cu;
  int NH, HS;
  std::vector<float> qkv, dout;
  int N() const { return cu.back(); }
  int B() const { return static_cast<int>(cu.size()) - 1; }
  int max_len() const {
    int m = 0;
    for (int b = 0; b < B(); ++b) m = std::max(m, cu[b + 1] - cu[b]);
    return m;
  }
};

Case make_case(const std::vector<int>& lens, int NH, int HS, float logit_scale, uint64_t seed) {
  Case c;
  c.cu = {0};
  for (int L : lens) c.cu.push_back(c.cu.back() + L);
  c.NH = NH, c.HS = HS;
  const int C = NH * HS;
  c.qkv = rand_vec(size_t(c.N()) * 3 * C, seed);
  const float s = std::sqrt(logit_scale * std::sqrt(static_cast<float>(HS)) / (HS / 3.0f));
  for (int n = 0; n < c.N(); ++n)
    for (int k = 0; k < 2 * C; ++k) c.qkv[size_t(n) * 3 * C + k] *= s;
  c.dout = rand_vec(size_t(c.N()) * C, seed + 1);
  return c;
}

struct Result {
  std::vector<float> out, lse, dqkv;
};

Result cpu_reference(const Case& c, const std::vector<float>& qkv, const std::vector<float>& dout, bool causal) {
  Result r;
  const int C = c.NH * c.HS;
  r.out.assign(size_t(c.N()) * C, 0), r.lse.assign(size_t(c.N()) * c.NH, 0), r.dqkv.assign(qkv.size(), 0);
  cpu::attention_forward(cpu::AttnImpl::Naive, r.out.data(), r.lse.data(), qkv.data(), c.cu.data(), c.B(), c.NH, c.HS, causal);
  cpu::attention_backward(cpu::AttnImpl::Naive, r.dqkv.data(), dout.data(), qkv.data(), r.out.data(), r.lse.data(),
                          c.cu.data(), c.B(), c.NH, c.HS, causal);
  return r;
}

// Host values ↔ device storage of one element type: fp32 as is, bf16 as its 16-bit patterns.
struct F32Storage {
  using T = float;
  static constexpr cuda::AttnDtype kDtype = cuda::AttnDtype::F32;
  static std::vector<float> encode(const std::vector<float>& v) { return v; }
  static std::vector<float> decode(const std::vector<float>& v) { return v; }
  static float nan() { return std::nanf(""); }
};
struct Bf16Storage {
  using T = uint16_t;
  static constexpr cuda::AttnDtype kDtype = cuda::AttnDtype::BF16;
  static std::vector<uint16_t> encode(const std::vector<float>& v) { return to_bf16_bits(v); }
  static std::vector<float> decode(const std::vector<uint16_t>& v) { return from_bf16_bits(v); }
  static uint16_t nan() { return 0xffff; }
};

// Runs one GPU kernel on the case: forward then backward, qkv[N,3C] packed as the model stores it,
// every output pre-filled with NaN.
template <class S>
Result gpu_run(cuda::AttnKernel k, const Case& c, bool causal) {
  using T = typename S::T;
  const int C = c.NH * c.HS, N = c.N();
  int32_t* cu = dev_upload(c.cu);
  T *qkv = dev_upload(S::encode(c.qkv)), *dout = dev_upload(S::encode(c.dout));
  T* out = dev_upload(std::vector<T>(size_t(N) * C, S::nan()));
  float* lse = dev_upload(std::vector<float>(size_t(N) * c.NH, std::nanf("")));
  T* dqkv = dev_upload(std::vector<T>(size_t(N) * 3 * C, S::nan()));
  cuda::AttnShape s;
  s.cu_seqlens = cu, s.B = c.B(), s.NH = c.NH, s.HS = c.HS, s.max_len = c.max_len(), s.n_tokens = N, s.causal = causal;
  float* ws = dev_upload(std::vector<float>(cuda::attention_bwd_workspace_floats(s), std::nanf("")));
  cuda::attention_forward(k, S::kDtype, s, {qkv, qkv + C, qkv + 2 * C, 3 * C, 3 * C, 3 * C, out, C, lse}, 0);
  cuda::attention_backward(k, S::kDtype, s,
                           {qkv, qkv + C, qkv + 2 * C, out, dout, 3 * C, 3 * C, 3 * C, C, C, lse, dqkv, dqkv + C,
                            dqkv + 2 * C, 3 * C, 3 * C, 3 * C, ws},
                           0);
  Result r{S::decode(dev_download(out, size_t(N) * C)), dev_download(lse, size_t(N) * c.NH),
           S::decode(dev_download(dqkv, size_t(N) * 3 * C))};
  for (void* p : {(void*)cu, (void*)qkv, (void*)dout, (void*)out, (void*)lse, (void*)dqkv, (void*)ws}) cudaFree(p);
  return r;
}
Result gpu_run_f32(cuda::AttnKernel k, const Case& c, bool causal) { return gpu_run<F32Storage>(k, c, causal); }
Result gpu_run_bf16(cuda::AttnKernel k, const Case& c, bool causal) { return gpu_run<Bf16Storage>(k, c, causal); }

::testing::AssertionResult lse_close(const std::vector<float>& a, const std::vector<float>& ref) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - ref[i]) <= 1e-4 + 1e-5 * std::fabs(ref[i])))
      return ::testing::AssertionFailure() << "lse[" << i << "] = " << a[i] << ", reference " << ref[i];
  return ::testing::AssertionSuccess();
}

std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_round(v[i]);
  return r;
}

struct Param {
  int HS;
  bool causal;
  float logits;
  cuda::AttnKernel flash = cuda::AttnKernel::Flash64;
};
std::string param_name(const ::testing::TestParamInfo<Param>& i) {
  return std::string(cuda::attn_kernel_name(i.param.flash)) + "_hs" + std::to_string(i.param.HS) +
         (i.param.causal ? "_causal" : "_full") + "_logits" + std::to_string(static_cast<int>(i.param.logits));
}
void PrintTo(const Param& p, std::ostream* os) {
  *os << cuda::attn_kernel_name(p.flash) << " hs " << p.HS << (p.causal ? " causal" : " full") << " logits ±" << p.logits;
}
std::vector<Param> all_params() {
  std::vector<Param> v;
  for (cuda::AttnKernel k : {cuda::AttnKernel::Flash64, cuda::AttnKernel::Flash128})
    for (Param p : {Param{24, true, 1}, Param{32, true, 1}, Param{64, true, 1}, Param{128, true, 1},
                    Param{64, false, 1}, Param{128, false, 1}, Param{64, true, 50}, Param{128, false, 50}}) {
      p.flash = k;
      v.push_back(p);
    }
  return v;
}
const std::vector<int> kLens = {1, 31, 33, 127, 200};

}  // namespace

class CudaAttention : public ::testing::TestWithParam<Param> {};

TEST_P(CudaAttention, NaiveMatchesCpuReference) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  if (pr.flash != cuda::AttnKernel::Flash64) GTEST_SKIP() << "the reference is checked once per shape";
  const Case c = make_case(kLens, 2, pr.HS, pr.logits, 100 + pr.HS);
  const Result ref = cpu_reference(c, c.qkv, c.dout, pr.causal);
  const Result got = gpu_run_f32(cuda::AttnKernel::Naive, c, pr.causal);
  EXPECT_LT(rel_l2(got.out, ref.out), 1e-5);
  EXPECT_TRUE(lse_close(got.lse, ref.lse));
  EXPECT_LT(rel_l2(got.dqkv, ref.dqkv), 1e-4);
}

TEST_P(CudaAttention, FlashMatchesReferenceOnTheSameBf16Inputs) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  const Case c = make_case(kLens, 2, pr.HS, pr.logits, 200 + pr.HS);
  const Result ref = cpu_reference(c, rounded(c.qkv), c.dout, pr.causal);
  const Result got = gpu_run_f32(pr.flash, c, pr.causal);
  const double e_out = rel_l2(got.out, ref.out), e_d = rel_l2(got.dqkv, ref.dqkv);
  EXPECT_LT(e_out, 1e-2);
  EXPECT_TRUE(lse_close(got.lse, ref.lse));
  EXPECT_LT(e_d, 2e-2);
  // per part of qkv: dq, dk, dv each within tolerance (a part left at zero would hide in the total)
  const int C = c.NH * c.HS;
  for (int part = 0; part < 3; ++part) {
    std::vector<float> a, b;
    for (int n = 0; n < c.N(); ++n)
      for (int k = 0; k < C; ++k) a.push_back(got.dqkv[size_t(n) * 3 * C + part * C + k]), b.push_back(ref.dqkv[size_t(n) * 3 * C + part * C + k]);
    EXPECT_LT(rel_l2(a, b), 2e-2) << "part " << "qkv"[part];
  }
  std::printf("flash fp32-in: out %.2e  dqkv %.2e\n", e_out, e_d);
}

TEST_P(CudaAttention, Bf16StorageFlashAgreesWithNaive) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  if (pr.HS % 8) GTEST_SKIP() << "bf16 storage needs head sizes divisible by 8";
  const Case c = make_case(kLens, 2, pr.HS, pr.logits, 300 + pr.HS);
  const Result ref = cpu_reference(c, rounded(c.qkv), rounded(c.dout), pr.causal);
  const Result naive = gpu_run_bf16(cuda::AttnKernel::Naive, c, pr.causal);
  const Result flash = gpu_run_bf16(pr.flash, c, pr.causal);
  // bf16 outputs: the naive kernel's only error is the final rounding to bf16 (2⁻⁹ relative)
  EXPECT_LT(rel_l2(naive.out, ref.out), 4e-3);
  EXPECT_TRUE(lse_close(naive.lse, ref.lse));
  EXPECT_LT(rel_l2(flash.out, ref.out), 1e-2);
  EXPECT_TRUE(lse_close(flash.lse, ref.lse));
  EXPECT_LT(rel_l2(naive.dqkv, ref.dqkv), 1e-2);
  EXPECT_LT(rel_l2(flash.dqkv, ref.dqkv), 3e-2);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::ValuesIn(all_params()), param_name);

TEST(CudaAttentionLast, MatchesCpuBackend) {
  CAIRN_REQUIRE_GPU();
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_cuda_backend(0);
  for (int HS : {24, 64, 128}) {
    const Case c = make_case(kLens, 3, HS, 1, 400 + HS);
    const int C = c.NH * HS, N = c.N(), B = c.B();
    SeqLayout s;
    s.n_seqs = B, s.n_tokens = N, s.max_len = c.max_len(), s.host_cu_seqlens = c.cu.data(), s.cu_seqlens = c.cu.data();
    auto dout = rand_vec(size_t(B) * C, 401);
    std::vector<float> out(size_t(B) * C), lse(size_t(B) * c.NH), dqkv(size_t(N) * 3 * C);
    cpu->attention_last_forward(out.data(), lse.data(), c.qkv.data(), s, c.NH, HS);
    cpu->attention_last_backward(dqkv.data(), dout.data(), c.qkv.data(), out.data(), lse.data(), s, c.NH, HS);
    test::DeviceBuffers g(*gpu);
    float *gqkv = g.upload(c.qkv), *gout = g.poisoned(out.size()), *glse = g.poisoned(lse.size());
    float* gdqkv = g.poisoned(dqkv.size());
    SeqLayout gs = s;
    gs.cu_seqlens = g.upload(c.cu);
    gpu->attention_last_forward(gout, glse, gqkv, gs, c.NH, HS);
    gpu->attention_last_backward(gdqkv, g.upload(dout), gqkv, gout, glse, gs, c.NH, HS);
    EXPECT_TRUE(test::all_close(g.download(gout, out.size()), out, 1e-5, 1e-4)) << HS;
    EXPECT_TRUE(test::all_close(g.download(glse, lse.size()), lse, 1e-5, 1e-5)) << HS;
    EXPECT_TRUE(test::all_close(g.download(gdqkv, dqkv.size()), dqkv, 1e-5, 1e-4)) << HS;
  }
}

}  // namespace cairn
