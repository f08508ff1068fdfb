// The GPU attention ladder (kernels/attention*.cu) against the CPU reference (src/cpu naive: fp32
// inputs, double accumulation; itself checked against the double reference and finite differences
// in tests/test_attention.cpp). Packed batch of awkward lengths (1, 31, 33, 127, 200), head sizes
// 24/32/64/128, causal and not, random inputs in [-1, 1] and ±50 logits; outputs pre-filled with NaN.
// Grouped-query attention: NH/NKV = 2/2 (multi-head), 9/3, 4/1, 4/2, 4/4, qkv rows
// [q (NH·HS) | k (NKV·HS) | v (NKV·HS)] as the model packs them; dq, dk and dv are checked one by one
// (a kv head missing a query head's contribution cannot hide in the total), and GQA must equal MHA run
// on key/value heads repeated G times (dK, dV of a kv head = the sum over its query heads).
//
// The flash kernels multiply bf16 operands, so they are compared with the reference run on the same
// bf16-rounded inputs: what remains is the rounding of P and dS to bf16 and the fp32 accumulation.
// Tolerances: naive ‖err‖/‖ref‖ ≤ 1e-5 (fp32 vs double accumulation); flash output ≤ 1e-2, lse
// |err| ≤ 1e-4 + 1e-5·|lse|, gradients ≤ 2e-2.
//
// Shared prefixes (SeqLayout::prefix_of; the tests at the end): groups [prefix | rest | rest ..] of
// awkward lengths among plain sequences, every kernel against the CPU reference reading the same
// layout (also segment by segment), against the same sequences packed without sharing, with no prefix
// at all against the null layout, and through both backends (attention and last-query attention).
#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>

#include "attention_case.h"
#include "cpu/attention.h"
#include "gpu/gpu_util.h"
#include "kernels/kernels.h"

namespace cairn {
using test::AttnCase;
using test::make_attn_case;
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

struct Result {
  std::vector<float> out, lse, dqkv;
};

// prefix_of: shared prefixes as SeqLayout::prefix_of (empty: none).
Result cpu_reference(const AttnCase& c, const std::vector<float>& qkv, const std::vector<float>& dout, bool causal,
                     const std::vector<int32_t>& prefix_of = {}) {
  Result r;
  r.out.assign(size_t(c.N()) * c.C(), 0), r.lse.assign(size_t(c.N()) * c.NH, 0), r.dqkv.assign(qkv.size(), 0);
  const int32_t* pre = prefix_of.empty() ? nullptr : prefix_of.data();
  cpu::attention_forward(cpu::AttnImpl::Naive, r.out.data(), r.lse.data(), qkv.data(), c.cu.data(), c.B(), c.NH, c.NKV,
                         c.HS, causal, pre);
  cpu::attention_backward(cpu::AttnImpl::Naive, r.dqkv.data(), dout.data(), qkv.data(), r.out.data(), r.lse.data(),
                          c.cu.data(), c.B(), c.NH, c.NKV, c.HS, causal, pre);
  return r;
}

// The columns [begin, end) of every row of a [N, W] array: one part (q, k or v) of qkv.
std::vector<float> columns(const std::vector<float>& a, int N, int W, int begin, int end) {
  std::vector<float> r;
  for (int n = 0; n < N; ++n)
    for (int k = begin; k < end; ++k) r.push_back(a[size_t(n) * W + k]);
  return r;
}
std::vector<float> qkv_part(const std::vector<float>& a, const AttnCase& c, int part) {
  const int b[4] = {0, c.NH * c.HS, (c.NH + c.NKV) * c.HS, c.W()};
  return columns(a, c.N(), c.W(), b[part], b[part + 1]);
}
// rel_l2 of dq, dk and dv separately, each below tol.
void expect_parts_close(const std::vector<float>& got, const std::vector<float>& ref, const AttnCase& c, double tol,
                        const char* what) {
  for (int part = 0; part < 3; ++part)
    EXPECT_LT(rel_l2(qkv_part(got, c, part), qkv_part(ref, c, part)), tol) << what << ": d" << "qkv"[part];
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

// Runs one GPU kernel on the case: forward then backward, qkv[N, (NH+2·NKV)·HS] packed as the model
// stores it, every output (and the workspace) pre-filled with NaN. prefix_of as for cpu_reference.
template <class S>
Result gpu_run(cuda::AttnKernel k, const AttnCase& c, bool causal, const std::vector<int32_t>& prefix_of = {}) {
  using T = typename S::T;
  const int N = c.N();
  const long C = c.C(), W = c.W();
  int32_t* cu = dev_upload(c.cu);
  int32_t* pre = prefix_of.empty() ? nullptr : dev_upload(prefix_of);
  T *qkv = dev_upload(S::encode(c.qkv)), *dout = dev_upload(S::encode(c.dout));
  T* out = dev_upload(std::vector<T>(size_t(N) * C, S::nan()));
  float* lse = dev_upload(std::vector<float>(size_t(N) * c.NH, std::nanf("")));
  T* dqkv = dev_upload(std::vector<T>(size_t(N) * W, S::nan()));
  cuda::AttnShape s;
  s.cu_seqlens = cu, s.B = c.B(), s.NH = c.NH, s.NKV = c.NKV, s.HS = c.HS, s.max_len = c.max_len(), s.n_tokens = N;
  s.causal = causal, s.prefix_of = pre;
  if (pre) cuda::check_prefix_layout(prefix_of.data(), c.B());
  EXPECT_EQ(s.qkv_cols(), W);
  float* ws = dev_upload(std::vector<float>(cuda::attention_bwd_workspace_floats(s), std::nanf("")));
  const long kc = s.k_col(), vc = s.v_col();
  cuda::attention_forward(k, S::kDtype, s, {qkv, qkv + kc, qkv + vc, W, W, W, out, C, lse}, 0);
  cuda::attention_backward(
      k, S::kDtype, s,
      {qkv, qkv + kc, qkv + vc, out, dout, W, W, W, C, C, lse, dqkv, dqkv + kc, dqkv + vc, W, W, W, ws}, 0);
  Result r{S::decode(dev_download(out, size_t(N) * C)), dev_download(lse, size_t(N) * c.NH),
           S::decode(dev_download(dqkv, size_t(N) * W))};
  for (void* p : {(void*)cu, (void*)pre, (void*)qkv, (void*)dout, (void*)out, (void*)lse, (void*)dqkv, (void*)ws})
    cudaFree(p);
  return r;
}
Result gpu_run_f32(cuda::AttnKernel k, const AttnCase& c, bool causal, const std::vector<int32_t>& prefix_of = {}) {
  return gpu_run<F32Storage>(k, c, causal, prefix_of);
}
Result gpu_run_bf16(cuda::AttnKernel k, const AttnCase& c, bool causal) { return gpu_run<Bf16Storage>(k, c, causal); }

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
  int NH, NKV, HS;
  bool causal;
  float logits;
  cuda::AttnKernel flash = cuda::AttnKernel::Flash64;
};
std::string param_name(const ::testing::TestParamInfo<Param>& i) {
  const Param& p = i.param;
  return std::string(cuda::attn_kernel_name(p.flash)) + "_nh" + std::to_string(p.NH) + "kv" + std::to_string(p.NKV) +
         "_hs" + std::to_string(p.HS) + (p.causal ? "_causal" : "_full") + "_logits" +
         std::to_string(static_cast<int>(p.logits));
}
void PrintTo(const Param& p, std::ostream* os) {
  *os << cuda::attn_kernel_name(p.flash) << " NH " << p.NH << " NKV " << p.NKV << " hs " << p.HS
      << (p.causal ? " causal" : " full") << " logits ±" << p.logits;
}
std::vector<Param> all_params() {
  std::vector<Param> shapes = {
      // multi-head (NKV = NH = 2)
      {2, 2, 24, true, 1}, {2, 2, 32, true, 1}, {2, 2, 64, true, 1}, {2, 2, 128, true, 1}, {2, 2, 64, false, 1},
      {2, 2, 128, false, 1}, {2, 2, 64, true, 50}, {2, 2, 128, false, 50},
      // grouped-query, causal, every head size below (and 4/4: MHA through the same shapes)
      // (added in the loop), then a few full-mask and large-logit ones
      {9, 3, 64, false, 1}, {4, 1, 128, false, 1}, {4, 2, 24, false, 1}, {4, 1, 64, true, 50}, {9, 3, 128, false, 50}};
  for (auto [NH, NKV] : {std::pair{9, 3}, {4, 1}, {4, 2}, {4, 4}})
    for (int HS : {24, 32, 64, 128}) shapes.push_back({NH, NKV, HS, true, 1});
  std::vector<Param> v;
  for (cuda::AttnKernel k : {cuda::AttnKernel::Flash64, cuda::AttnKernel::Flash128})
    for (Param p : shapes) {
      p.flash = k;
      v.push_back(p);
    }
  return v;
}
const std::vector<int> kLens = {1, 31, 33, 127, 200};

uint64_t seed_of(const Param& p, uint64_t base) { return base + 1000 * p.NH + 100 * p.NKV + p.HS; }

}  // namespace

class CudaAttention : public ::testing::TestWithParam<Param> {};

TEST_P(CudaAttention, NaiveMatchesCpuReference) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  if (pr.flash != cuda::AttnKernel::Flash64) GTEST_SKIP() << "the reference is checked once per shape";
  const AttnCase c = make_attn_case(kLens, pr.NH, pr.NKV, pr.HS, pr.logits, seed_of(pr, 100));
  const Result ref = cpu_reference(c, c.qkv, c.dout, pr.causal);
  const Result got = gpu_run_f32(cuda::AttnKernel::Naive, c, pr.causal);
  EXPECT_LT(rel_l2(got.out, ref.out), 1e-5);
  EXPECT_TRUE(lse_close(got.lse, ref.lse));
  EXPECT_LT(rel_l2(got.dqkv, ref.dqkv), 1e-4);
  expect_parts_close(got.dqkv, ref.dqkv, c, 1e-4, "naive");
}

TEST_P(CudaAttention, FlashMatchesReferenceOnTheSameBf16Inputs) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  const AttnCase c = make_attn_case(kLens, pr.NH, pr.NKV, pr.HS, pr.logits, seed_of(pr, 200));
  const Result ref = cpu_reference(c, rounded(c.qkv), c.dout, pr.causal);
  const Result got = gpu_run_f32(pr.flash, c, pr.causal);
  const double e_out = rel_l2(got.out, ref.out), e_d = rel_l2(got.dqkv, ref.dqkv);
  EXPECT_LT(e_out, 1e-2);
  EXPECT_TRUE(lse_close(got.lse, ref.lse));
  EXPECT_LT(e_d, 2e-2);
  expect_parts_close(got.dqkv, ref.dqkv, c, 2e-2, "flash");
  std::printf("flash fp32-in: out %.2e  dqkv %.2e\n", e_out, e_d);
}

TEST_P(CudaAttention, Bf16StorageFlashAgreesWithNaive) {
  CAIRN_REQUIRE_GPU();
  const Param pr = GetParam();
  if (pr.HS % 8) GTEST_SKIP() << "bf16 storage needs head sizes divisible by 8";
  const AttnCase c = make_attn_case(kLens, pr.NH, pr.NKV, pr.HS, pr.logits, seed_of(pr, 300));
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
  expect_parts_close(naive.dqkv, ref.dqkv, c, 1e-2, "naive bf16");
  expect_parts_close(flash.dqkv, ref.dqkv, c, 3e-2, "flash bf16");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::ValuesIn(all_params()), param_name);

// GQA is MHA with each key/value head repeated G = NH/NKV times: out and lse are the same numbers (the
// same products in the same order: bit for bit), dq the same up to the order of its atomics, and dk,
// dv of a kv head the sum of the MHA gradients of its G copies. Independent of the CPU reference.
TEST(CudaAttentionGqa, EqualsMhaWithRepeatedKvHeads) {
  CAIRN_REQUIRE_GPU();
  for (cuda::AttnKernel k : cuda::kAttnKernels)
    for (auto [NH, NKV] : {std::pair{9, 3}, {4, 1}, {4, 2}, {6, 2}})
      for (int HS : {24, 64, 128})
        for (bool causal : {true, false}) {
          const AttnCase g = make_attn_case(kLens, NH, NKV, HS, 3, 500 + 10 * NH + NKV + HS);
          const int G = NH / NKV, N = g.N();
          AttnCase m = g;  // the same q and dout; kv head j of the MHA case = kv head j / G of g
          m.NKV = NH;
          m.qkv.assign(size_t(N) * m.W(), 0.0f);
          for (int n = 0; n < N; ++n)
            for (int col = 0; col < m.W(); ++col) {
              int src = col;  // q columns are shared
              if (col >= NH * HS) {
                const int part = (col - NH * HS) / (NH * HS), head = (col - NH * HS) % (NH * HS) / HS, e = col % HS;
                src = (NH + part * NKV + head / G) * HS + e;
              }
              m.qkv[size_t(n) * m.W() + col] = g.qkv[size_t(n) * g.W() + src];
            }
          const Result rg = gpu_run_f32(k, g, causal), rm = gpu_run_f32(k, m, causal);
          const std::string what = std::string(cuda::attn_kernel_name(k)) + " NH " + std::to_string(NH) + " NKV " +
                                   std::to_string(NKV) + " hs " + std::to_string(HS) + (causal ? " causal" : " full");
          EXPECT_TRUE(test::all_close(rg.out, rm.out, 0, 0)) << what;
          EXPECT_TRUE(test::all_close(rg.lse, rm.lse, 0, 0)) << what;
          EXPECT_LT(rel_l2(qkv_part(rg.dqkv, g, 0), qkv_part(rm.dqkv, m, 0)), 1e-6) << what << ": dq";
          for (int part = 1; part < 3; ++part) {  // dk, dv: sum the MHA copies in double
            std::vector<double> sum(size_t(N) * NKV * HS, 0.0);
            for (int n = 0; n < N; ++n)
              for (int h = 0; h < NH; ++h)
                for (int e = 0; e < HS; ++e)
                  sum[(size_t(n) * NKV + h / G) * HS + e] +=
                      rm.dqkv[size_t(n) * m.W() + (NH + (part - 1) * NH + h) * HS + e];
            EXPECT_LT(rel_l2(qkv_part(rg.dqkv, g, part), sum), 1e-5) << what << ": d" << "qkv"[part];
          }
        }
}

// Shapes the kernels cannot run are refused before anything reaches the device (no GPU needed).
TEST(CudaAttentionGqa, RefusesHeadCountsThatDoNotGroup) {
  for (auto [NH, NKV] : {std::pair{4, 3}, {4, 0}, {3, 6}}) {
    cuda::AttnShape s;
    s.B = 1, s.NH = NH, s.NKV = NKV, s.HS = 64, s.max_len = 1, s.n_tokens = 1;
    const cuda::AttnFwd f{};
    const cuda::AttnBwd b{};
    EXPECT_THROW(cuda::attention_forward(cuda::AttnKernel::Flash128, cuda::AttnDtype::F32, s, f, 0),
                 std::invalid_argument)
        << NH << "/" << NKV;
    EXPECT_THROW(cuda::attention_backward(cuda::AttnKernel::Naive, cuda::AttnDtype::F32, s, b, 0),
                 std::invalid_argument)
        << NH << "/" << NKV;
    EXPECT_THROW(cuda::attention_last_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 1, NH, NKV, 64, 0),
                 std::invalid_argument);
    EXPECT_THROW(cuda::attention_last_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, NH,
                                               NKV, 64, 0),
                 std::invalid_argument);
  }
  cuda::AttnShape mha;  // NKV left at 0: a caller that forgot it is told, not given MHA by accident
  mha.B = 1, mha.NH = 4, mha.HS = 64, mha.max_len = 1, mha.n_tokens = 1;
  EXPECT_THROW(cuda::attention_forward(cuda::AttnKernel::Flash64, cuda::AttnDtype::F32, mha, cuda::AttnFwd{}, 0),
               std::invalid_argument);
}

namespace {
SeqLayout layout_of(const AttnCase& c, const int32_t* device_cu) {
  SeqLayout s;
  s.n_seqs = c.B(), s.n_tokens = c.N(), s.max_len = c.max_len(), s.host_cu_seqlens = c.cu.data();
  s.cu_seqlens = device_cu;
  return s;
}
}  // namespace

// The backend's attention (kAttnBest on fp32 qkv, the model's packing) against the CPU backend's on
// the same bf16-rounded inputs: the backend's k / v column offsets and strides for every grouping.
TEST(CudaAttentionBackend, GroupedQueryMatchesCpuBackend) {
  CAIRN_REQUIRE_GPU();
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_cuda_backend(0);
  for (auto [NH, NKV] : {std::pair{9, 3}, {4, 1}, {4, 2}, {4, 4}})
    for (int HS : {24, 64, 128}) {
      const AttnCase c = make_attn_case(kLens, NH, NKV, HS, 1, 600 + 10 * NH + NKV + HS);
      const std::vector<float> qkv = rounded(c.qkv);  // for both (the GPU would round c.qkv the same way)
      const size_t N = c.N(), C = c.C();
      std::vector<float> out(N * C), lse(N * NH), dqkv(N * c.W());
      const SeqLayout hs = layout_of(c, c.cu.data());
      cpu->attention_forward(out.data(), lse.data(), qkv.data(), hs, NH, NKV, HS);
      cpu->attention_backward(dqkv.data(), c.dout.data(), qkv.data(), out.data(), lse.data(), hs, NH, NKV, HS);
      test::DeviceBuffers g(*gpu);
      float *gqkv = g.upload(qkv), *gout = g.poisoned(out.size()), *glse = g.poisoned(lse.size());
      float* gdqkv = g.poisoned(dqkv.size());
      const SeqLayout gs = layout_of(c, g.upload(c.cu));
      gpu->attention_forward(gout, glse, gqkv, gs, NH, NKV, HS);
      gpu->attention_backward(gdqkv, g.upload(c.dout), gqkv, gout, glse, gs, NH, NKV, HS);
      const std::string what = "NH " + std::to_string(NH) + " NKV " + std::to_string(NKV) + " hs " + std::to_string(HS);
      EXPECT_LT(rel_l2(g.download(gout, out.size()), out), 1e-2) << what;
      EXPECT_TRUE(lse_close(g.download(glse, lse.size()), lse)) << what;
      expect_parts_close(g.download(gdqkv, dqkv.size()), dqkv, c, 2e-2, what.c_str());
    }
}

TEST(CudaAttentionLast, MatchesCpuBackend) {
  CAIRN_REQUIRE_GPU();
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_cuda_backend(0);
  for (auto [NH, NKV] : {std::pair{3, 3}, {9, 3}, {4, 1}, {4, 2}})
    for (int HS : {24, 64, 128}) {
      const AttnCase c = make_attn_case(kLens, NH, NKV, HS, 1, 400 + 10 * NH + NKV + HS);
      const int C = c.C(), N = c.N(), B = c.B();
      const SeqLayout s = layout_of(c, c.cu.data());
      auto dout = rand_vec(size_t(B) * C, 401);
      std::vector<float> out(size_t(B) * C), lse(size_t(B) * NH), dqkv(size_t(N) * c.W());
      cpu->attention_last_forward(out.data(), lse.data(), c.qkv.data(), s, NH, NKV, HS);
      cpu->attention_last_backward(dqkv.data(), dout.data(), c.qkv.data(), out.data(), lse.data(), s, NH, NKV, HS);
      test::DeviceBuffers g(*gpu);
      float *gqkv = g.upload(c.qkv), *gout = g.poisoned(out.size()), *glse = g.poisoned(lse.size());
      float* gdqkv = g.poisoned(dqkv.size());
      const SeqLayout gs = layout_of(c, g.upload(c.cu));
      gpu->attention_last_forward(gout, glse, gqkv, gs, NH, NKV, HS);
      gpu->attention_last_backward(gdqkv, g.upload(dout), gqkv, gout, glse, gs, NH, NKV, HS);
      const std::string what = "NH " + std::to_string(NH) + " NKV " + std::to_string(NKV) + " hs " + std::to_string(HS);
      EXPECT_TRUE(test::all_close(g.download(gout, out.size()), out, 1e-5, 1e-4)) << what;
      EXPECT_TRUE(test::all_close(g.download(glse, lse.size()), lse, 1e-5, 1e-5)) << what;
      const auto got = g.download(gdqkv, dqkv.size());
      EXPECT_TRUE(test::all_close(got, dqkv, 1e-5, 1e-4)) << what;
      for (int part = 0; part < 3; ++part)
        EXPECT_TRUE(test::all_close(qkv_part(got, c, part), qkv_part(dqkv, c, part), 1e-5, 1e-4))
            << what << ": d" << "qkv"[part];
    }
}

// ---- shared prefixes (SeqLayout::prefix_of) ----
// Packed groups [prefix | rest | rest ...] of awkward lengths, mixed with plain sequences, against the
// CPU reference (which reads the same layout), against the same sequences packed without sharing
// (independent of the CPU code), and through the backends (attention and last-query attention).
namespace {

// A group: a prefix of `prefix` rows and the segments continuing it (`rests`); prefix 0: each rest is
// a plain sequence.
struct PrefixGroup {
  int prefix;
  std::vector<int> rests;
};
struct PrefixCase {
  AttnCase c;
  std::vector<int32_t> prefix_of;
};
PrefixCase make_prefix_case(const std::vector<PrefixGroup>& groups, int NH, int NKV, int HS, float logits,
                            uint64_t seed) {
  std::vector<int> lens;
  std::vector<int32_t> prefix_of;
  for (const PrefixGroup& g : groups) {
    const int lead = g.prefix > 0 ? static_cast<int>(lens.size()) : -1;
    if (g.prefix > 0) lens.push_back(g.prefix), prefix_of.push_back(-1);
    for (int L : g.rests) lens.push_back(L), prefix_of.push_back(lead);
  }
  return {make_attn_case(lens, NH, NKV, HS, logits, seed), prefix_of};
}
// A prefix of 1 row (with a branch of 1 row), one of 300 (more than two key tiles of every tiling: 64
// keys forward, 64 and 128 backward) with three branches, branches longer than their prefix, plain
// sequences first, between and last (one of 1 row).
const std::vector<PrefixGroup> kPrefixGroups = {{0, {33}},     {1, {40, 1}},    {300, {1, 77, 130}},
                                                {0, {127, 1}}, {65, {200, 31}}, {0, {64}}};

// Segment by segment, columns [c0, c1) of rows of W floats: ‖got − ref‖ ≤ tol·(‖ref‖ + rms·√n) over
// the segment's n values (rms: of ref over all rows), so a short segment's error cannot hide in the
// total, and a segment whose true values are ~0 (dq, dk of a 1-row sequence) is held to the scale of
// the whole. NaN fails.
::testing::AssertionResult segments_close(const std::vector<float>& got, const std::vector<float>& ref,
                                          const std::vector<int32_t>& cu, int W, int c0, int c1, double tol) {
  const int N = cu.back(), width = c1 - c0;
  double all = 0;
  for (int n = 0; n < N; ++n)
    for (int k = c0; k < c1; ++k) all += double(ref[size_t(n) * W + k]) * ref[size_t(n) * W + k];
  const double rms = std::sqrt(all / std::max(1.0, double(N) * width));
  for (size_t b = 0; b + 1 < cu.size(); ++b) {
    double num = 0, den = 0;
    for (int n = cu[b]; n < cu[b + 1]; ++n)
      for (int k = c0; k < c1; ++k) {
        const double g = got[size_t(n) * W + k], r = ref[size_t(n) * W + k];
        num += (g - r) * (g - r), den += r * r;
      }
    const double bound = tol * (std::sqrt(den) + rms * std::sqrt(double(cu[b + 1] - cu[b]) * width));
    if (!(std::sqrt(num) <= bound))
      return ::testing::AssertionFailure() << "segment " << b << " (rows " << cu[b] << ".." << cu[b + 1] - 1
                                           << "): error " << std::sqrt(num) << " > bound " << bound;
  }
  return ::testing::AssertionSuccess();
}

// out, lse and each of dq, dk, dv: in total (tol_out, tol_d) and segment by segment (seg_out, seg_d).
void expect_close_by_segment(const Result& got, const Result& ref, const AttnCase& c, double tol_out, double tol_d,
                             double seg_out, double seg_d, const std::string& what) {
  EXPECT_LT(rel_l2(got.out, ref.out), tol_out) << what;
  EXPECT_TRUE(lse_close(got.lse, ref.lse)) << what;
  expect_parts_close(got.dqkv, ref.dqkv, c, tol_d, what.c_str());
  EXPECT_TRUE(segments_close(got.out, ref.out, c.cu, c.C(), 0, c.C(), seg_out)) << what << ": out";
  const int b[4] = {0, c.NH * c.HS, (c.NH + c.NKV) * c.HS, c.W()};
  for (int part = 0; part < 3; ++part)
    EXPECT_TRUE(segments_close(got.dqkv, ref.dqkv, c.cu, c.W(), b[part], b[part + 1], seg_d))
        << what << ": d" << "qkv"[part];
}

struct PrefixParam {
  cuda::AttnKernel kernel;
  int NH, NKV, HS;
  bool causal;
  float logits;
};
std::string prefix_param_name(const ::testing::TestParamInfo<PrefixParam>& i) {
  const PrefixParam& p = i.param;
  return std::string(cuda::attn_kernel_name(p.kernel)) + "_nh" + std::to_string(p.NH) + "kv" + std::to_string(p.NKV) +
         "_hs" + std::to_string(p.HS) + (p.causal ? "_causal" : "_full") + "_logits" +
         std::to_string(static_cast<int>(p.logits));
}
void PrintTo(const PrefixParam& p, std::ostream* os) {
  *os << cuda::attn_kernel_name(p.kernel) << " NH " << p.NH << " NKV " << p.NKV << " hs " << p.HS
      << (p.causal ? " causal" : " full") << " logits ±" << p.logits;
}
// Every kernel; GQA 9/3 and 4/1, MHA 2/2 and 4/4; head sizes 24 (padded), 64, 128 (Flash backward's
// 32-query tiles); causal and not; ±50 logits once.
std::vector<PrefixParam> prefix_params() {
  struct Shape {
    int NH, NKV, HS;
    bool causal;
    float logits;
  };
  const Shape shapes[] = {{9, 3, 64, true, 1},   {9, 3, 64, false, 1},  {2, 2, 64, true, 1},  {2, 2, 64, false, 1},
                          {4, 4, 128, true, 1},  {4, 1, 128, false, 1}, {4, 1, 24, true, 1},  {9, 3, 64, true, 50}};
  std::vector<PrefixParam> v;
  for (cuda::AttnKernel k : cuda::kAttnKernels)
    for (const Shape& s : shapes) v.push_back({k, s.NH, s.NKV, s.HS, s.causal, s.logits});
  return v;
}
uint64_t prefix_seed(const PrefixParam& p, uint64_t base) {
  return base + 1000 * p.NH + 100 * p.NKV + p.HS + (p.causal ? 0 : 7) + static_cast<uint64_t>(p.logits);
}

}  // namespace

class CudaAttentionPrefix : public ::testing::TestWithParam<PrefixParam> {};

// fp32 storage: naive against the reference on the same inputs (fp32 vs double accumulation), flash
// against the reference on the bf16-rounded inputs — the tolerances of the unshared tests above, and
// per segment (a prefix's dk, dv missing a branch's terms, or a 1-row branch, cannot hide).
TEST_P(CudaAttentionPrefix, MatchesCpuReference) {
  CAIRN_REQUIRE_GPU();
  const PrefixParam pr = GetParam();
  const PrefixCase pc = make_prefix_case(kPrefixGroups, pr.NH, pr.NKV, pr.HS, pr.logits, prefix_seed(pr, 700));
  const AttnCase& c = pc.c;
  const bool naive = pr.kernel == cuda::AttnKernel::Naive;
  const Result ref = cpu_reference(c, naive ? c.qkv : rounded(c.qkv), c.dout, pr.causal, pc.prefix_of);
  const Result got = gpu_run_f32(pr.kernel, c, pr.causal, pc.prefix_of);
  if (naive) expect_close_by_segment(got, ref, c, 1e-5, 1e-4, 1e-4, 1e-3, "naive");
  else expect_close_by_segment(got, ref, c, 1e-2, 2e-2, 3e-2, 6e-2, cuda::attn_kernel_name(pr.kernel));
}

// bf16 storage (the benchmark's): the same kernels reading bf16 rows through cp.async.
TEST_P(CudaAttentionPrefix, Bf16StorageMatchesCpuReference) {
  CAIRN_REQUIRE_GPU();
  const PrefixParam pr = GetParam();
  if (pr.HS % 8) GTEST_SKIP() << "bf16 storage needs head sizes divisible by 8";
  const PrefixCase pc = make_prefix_case(kPrefixGroups, pr.NH, pr.NKV, pr.HS, pr.logits, prefix_seed(pr, 800));
  const AttnCase& c = pc.c;
  const Result ref = cpu_reference(c, rounded(c.qkv), rounded(c.dout), pr.causal, pc.prefix_of);
  const Result got = gpu_run<Bf16Storage>(pr.kernel, c, pr.causal, pc.prefix_of);
  const bool naive = pr.kernel == cuda::AttnKernel::Naive;
  EXPECT_LT(rel_l2(got.out, ref.out), naive ? 4e-3 : 1e-2);
  EXPECT_TRUE(lse_close(got.lse, ref.lse));
  EXPECT_LT(rel_l2(got.dqkv, ref.dqkv), naive ? 1e-2 : 3e-2);
  expect_parts_close(got.dqkv, ref.dqkv, c, naive ? 1e-2 : 3e-2, cuda::attn_kernel_name(pr.kernel));
}

// A layout without a single prefix (prefix_of all −1) runs the plain path: the same numbers as a null
// prefix_of — out, lse, dk, dv bit for bit (each summed in a fixed order), dq up to the order of the
// flash kernels' atomics.
TEST_P(CudaAttentionPrefix, NoPrefixesIsThePlainPath) {
  CAIRN_REQUIRE_GPU();
  const PrefixParam pr = GetParam();
  const AttnCase c = make_attn_case(kLens, pr.NH, pr.NKV, pr.HS, pr.logits, prefix_seed(pr, 900));
  const Result plain = gpu_run_f32(pr.kernel, c, pr.causal);
  const Result none = gpu_run_f32(pr.kernel, c, pr.causal, std::vector<int32_t>(c.B(), -1));
  EXPECT_TRUE(test::all_close(none.out, plain.out, 0, 0));
  EXPECT_TRUE(test::all_close(none.lse, plain.lse, 0, 0));
  for (int part = 1; part < 3; ++part)
    EXPECT_TRUE(test::all_close(qkv_part(none.dqkv, c, part), qkv_part(plain.dqkv, c, part), 0, 0))
        << "d" << "qkv"[part];
  if (pr.kernel == cuda::AttnKernel::Naive) EXPECT_TRUE(test::all_close(none.dqkv, plain.dqkv, 0, 0));
  else EXPECT_LT(rel_l2(qkv_part(none.dqkv, c, 0), qkv_part(plain.dqkv, c, 0)), 1e-6);
}

// Sharing is only a packing: the group [P | R1 | R2 ..] computes what the sequences [P R1], [P R2], ..
// packed one by one compute — out and lse of each row the same, dq, dk, dv of a prefix row the sum of
// its copies' (each copy's prefix rows taking the shared dout once: the first copy's; the others zero).
// Causal only (without a mask a prefix row of [P R] would read R). Independent of the CPU code.
TEST_P(CudaAttentionPrefix, SharedEqualsUnsharedPacking) {
  CAIRN_REQUIRE_GPU();
  const PrefixParam pr = GetParam();
  if (!pr.causal) GTEST_SKIP() << "the unshared packing is equivalent under the causal mask only";
  const PrefixCase pc = make_prefix_case(kPrefixGroups, pr.NH, pr.NKV, pr.HS, pr.logits, prefix_seed(pr, 1000));
  const AttnCase& sh = pc.c;
  // mirrors[r]: the rows of the unshared packing that copy row r of the shared one (first: the one
  // that takes its dout)
  std::vector<std::vector<int>> mirrors(sh.N());
  AttnCase un = sh;
  un.cu = {0};
  std::vector<int> src_rows;  // shared row of each unshared row
  std::vector<bool> takes_dout;
  auto append = [&](int b) {
    for (int r = sh.cu[b]; r < sh.cu[b + 1]; ++r) {
      takes_dout.push_back(mirrors[r].empty());
      mirrors[r].push_back(static_cast<int>(src_rows.size()));
      src_rows.push_back(r);
    }
  };
  for (int b = 0; b < sh.B(); ++b) {
    if (pc.prefix_of[b] < 0 && b + 1 < sh.B() && pc.prefix_of[b + 1] == b) continue;  // a prefix: with each branch
    if (pc.prefix_of[b] >= 0) append(pc.prefix_of[b]);
    append(b);
    un.cu.push_back(static_cast<int32_t>(src_rows.size()));
  }
  const int W = sh.W(), C = sh.C(), NH = sh.NH;
  un.qkv.resize(src_rows.size() * W), un.dout.resize(src_rows.size() * C);
  for (size_t u = 0; u < src_rows.size(); ++u) {
    std::copy_n(sh.qkv.begin() + size_t(src_rows[u]) * W, W, un.qkv.begin() + u * W);
    for (int k = 0; k < C; ++k) un.dout[u * C + k] = takes_dout[u] ? sh.dout[size_t(src_rows[u]) * C + k] : 0.0f;
  }
  const Result rs = gpu_run_f32(pr.kernel, sh, true, pc.prefix_of), ru = gpu_run_f32(pr.kernel, un, true);
  Result want;  // the unshared results on the shared rows
  want.out.resize(rs.out.size()), want.lse.resize(rs.lse.size()), want.dqkv.assign(rs.dqkv.size(), 0.0f);
  for (int r = 0; r < sh.N(); ++r) {
    const int u0 = mirrors[r].front();
    std::copy_n(ru.out.begin() + size_t(u0) * C, C, want.out.begin() + size_t(r) * C);
    std::copy_n(ru.lse.begin() + size_t(u0) * NH, NH, want.lse.begin() + size_t(r) * NH);
    for (int k = 0; k < W; ++k) {
      double sum = 0;
      for (int u : mirrors[r]) sum += ru.dqkv[size_t(u) * W + k];
      want.dqkv[size_t(r) * W + k] = static_cast<float>(sum);
    }
  }
  const bool naive = pr.kernel == cuda::AttnKernel::Naive;
  if (naive) expect_close_by_segment(rs, want, sh, 1e-6, 1e-5, 1e-5, 1e-4, "naive");
  else expect_close_by_segment(rs, want, sh, 1e-2, 2e-2, 3e-2, 6e-2, cuda::attn_kernel_name(pr.kernel));
}

INSTANTIATE_TEST_SUITE_P(Groups, CudaAttentionPrefix, ::testing::ValuesIn(prefix_params()), prefix_param_name);

// The layout check the backend runs before any kernel (no GPU needed).
TEST(CudaAttentionPrefixLayout, RefusesWhatIsNotAGroupLayout) {
  const std::vector<int32_t> good[] = {{-1}, {-1, 0, 0, -1, -1, 4}, {-1, -1, 1}};
  for (const auto& g : good) EXPECT_NO_THROW(cuda::check_prefix_layout(g.data(), static_cast<int>(g.size())));
  const std::vector<int32_t> bad[] = {{0}, {-1, 1}, {-1, -1, 0}, {-1, 0, -1, 0}, {-1, 0, 1}, {-1, 5}};
  for (const auto& b : bad)
    EXPECT_THROW(cuda::check_prefix_layout(b.data(), static_cast<int>(b.size())), std::invalid_argument)
        << ::testing::PrintToString(b);
  EXPECT_THROW(cuda::check_prefix_layout(nullptr, 1), std::invalid_argument);  // a device array without its host copy
}

// Through the backends (the model's path: kAttnBest on fp32 qkv, SeqLayout with both copies of
// prefix_of): attention on bf16-rounded inputs, and last-query attention (fp32), CUDA against CPU.
TEST(CudaAttentionBackend, SharedPrefixesMatchCpuBackend) {
  CAIRN_REQUIRE_GPU();
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_cuda_backend(0);
  for (auto [NH, NKV, HS] : {std::tuple{9, 3, 64}, {4, 4, 64}, {4, 2, 128}}) {
    const PrefixCase pc = make_prefix_case(kPrefixGroups, NH, NKV, HS, 1, 1100 + 10 * NH + NKV + HS);
    const AttnCase& c = pc.c;
    const std::string what = "NH " + std::to_string(NH) + " NKV " + std::to_string(NKV) + " hs " + std::to_string(HS);
    const size_t N = c.N(), C = c.C(), B = c.B();
    SeqLayout hs = layout_of(c, c.cu.data());
    hs.prefix_of = hs.host_prefix_of = pc.prefix_of.data();
    for (size_t b = 0; b < B; ++b)
      if (const int g = pc.prefix_of[b]; g >= 0) hs.max_prefix = std::max(hs.max_prefix, c.cu[g + 1] - c.cu[g]);
    test::DeviceBuffers g(*gpu);
    SeqLayout gs = hs;
    gs.cu_seqlens = g.upload(c.cu), gs.prefix_of = g.upload(pc.prefix_of);
    {
      const std::vector<float> qkv = rounded(c.qkv);
      std::vector<float> out(N * C), lse(N * NH), dqkv(N * c.W());
      cpu->attention_forward(out.data(), lse.data(), qkv.data(), hs, NH, NKV, HS);
      cpu->attention_backward(dqkv.data(), c.dout.data(), qkv.data(), out.data(), lse.data(), hs, NH, NKV, HS);
      float *gqkv = g.upload(qkv), *gout = g.poisoned(out.size()), *glse = g.poisoned(lse.size());
      float* gdqkv = g.poisoned(dqkv.size());
      gpu->attention_forward(gout, glse, gqkv, gs, NH, NKV, HS);
      gpu->attention_backward(gdqkv, g.upload(c.dout), gqkv, gout, glse, gs, NH, NKV, HS);
      const Result got{g.download(gout, out.size()), g.download(glse, lse.size()), g.download(gdqkv, dqkv.size())};
      expect_close_by_segment(got, Result{out, lse, dqkv}, c, 1e-2, 2e-2, 3e-2, 6e-2, what);
    }
    {
      const auto dout = rand_vec(B * C, 1101);
      std::vector<float> out(B * C), lse(B * NH), dqkv(N * c.W());
      cpu->attention_last_forward(out.data(), lse.data(), c.qkv.data(), hs, NH, NKV, HS);
      cpu->attention_last_backward(dqkv.data(), dout.data(), c.qkv.data(), out.data(), lse.data(), hs, NH, NKV, HS);
      float *gqkv = g.upload(c.qkv), *gout = g.poisoned(out.size()), *glse = g.poisoned(lse.size());
      float* gdqkv = g.poisoned(dqkv.size());
      gpu->attention_last_forward(gout, glse, gqkv, gs, NH, NKV, HS);
      gpu->attention_last_backward(gdqkv, g.upload(dout), gqkv, gout, glse, gs, NH, NKV, HS);
      EXPECT_TRUE(test::all_close(g.download(gout, out.size()), out, 1e-5, 1e-4)) << what << ": last out";
      EXPECT_TRUE(test::all_close(g.download(glse, lse.size()), lse, 1e-5, 1e-5)) << what << ": last lse";
      const auto got = g.download(gdqkv, dqkv.size());
      for (int part = 0; part < 3; ++part)
        EXPECT_TRUE(test::all_close(qkv_part(got, c, part), qkv_part(dqkv, c, part), 1e-5, 1e-4))
            << what << ": last d" << "qkv"[part];
    }
    SeqLayout bad = gs;  // a segment continuing what is not its group's prefix is refused before any launch
    std::vector<int32_t> wrong = pc.prefix_of;
    wrong.back() = 0;
    bad.host_prefix_of = wrong.data();
    std::vector<float> out(N * C), lse(N * NH);
    float *gout = g.alloc<float>(out.size()), *glse = g.alloc<float>(lse.size());
    EXPECT_THROW(gpu->attention_forward(gout, glse, g.upload(c.qkv), bad, NH, NKV, HS), std::invalid_argument);
  }
}

}  // namespace cairn
