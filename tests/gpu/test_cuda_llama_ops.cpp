// The llama family's CUDA ops (kernels/llama.cu, kernels/layernorm.cu, kernels/elementwise.cu) against
// the CPU backend (itself checked against finite differences in tests/test_llama.cpp) on the same random
// inputs: RMSNorm (also with a +100 offset), SwiGLU (also where e^(−a) overflows), RoPE (positions up to
// 8192, several θ and GQA head layouts; v untouched; backward = inverse rotation; against the Hugging
// Face formula evaluated in double), embeddings without learned positions. Outputs are NaN-poisoned,
// accumulated (+=) gradients start from random prior contents.
// Tolerances: |err| ≤ atol + rtol·|ref| with fp32-rounding atol/rtol stated at each check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "gpu/gpu_util.h"
#include "kernels/kernels.h"
#include "util/rng.h"

namespace cairn {
using test::all_close;
using test::DeviceBuffers;
using test::rand_vec;

namespace {
constexpr double kAtol = 1e-5, kRtol = 1e-4;

struct Backends {
  std::unique_ptr<Backend> cpu = make_backend("cpu", 2);
  std::unique_ptr<Backend> gpu = make_cuda_backend(0, CudaMath::FP32);
};

std::string shape_name(int N, int C) { return std::to_string(N) + "x" + std::to_string(C); }
}  // namespace

class CudaRMSNorm : public ::testing::TestWithParam<float> {};  // param: offset added to inputs

TEST_P(CudaRMSNorm, ForwardAndBackward) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  for (auto [N, C] : {std::pair{1, 13}, {31, 64}, {33, 100}, {127, 576}, {5, 2048}, {300, 960}})
    for (float eps : {1e-5f, 1e-6f}) {
      auto x = rand_vec(size_t(N) * C, 21);
      for (auto& v : x) v += GetParam();
      auto w = rand_vec(C, 22, 0.5f, 1.5f), dy = rand_vec(size_t(N) * C, 24);
      auto dx0 = rand_vec(size_t(N) * C, 25), dw0 = rand_vec(C, 26);
      std::vector<float> y(size_t(N) * C), rstd(N), dx = dx0, dw = dw0;
      b.cpu->rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps);
      b.cpu->rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
      DeviceBuffers g(*b.gpu);
      float *gx = g.upload(x), *gw = g.upload(w), *gdy = g.upload(dy);
      float *gy = g.poisoned(y.size()), *gr = g.poisoned(N), *gdx = g.upload(dx0), *gdw = g.upload(dw0);
      b.gpu->rmsnorm_forward(gy, gr, gx, gw, N, C, eps);
      b.gpu->rmsnorm_backward(gdx, gdw, gdy, gx, gw, gr, N, C);
      const std::string what = shape_name(N, C) + " eps " + std::to_string(eps);
      EXPECT_TRUE(all_close(g.download(gy, y.size()), y, kAtol, kRtol)) << what;
      EXPECT_TRUE(all_close(g.download(gr, N), rstd, 0, 4e-6)) << what;  // fp32 vs double Σx²
      EXPECT_TRUE(all_close(g.download(gdx, dx.size()), dx, kAtol, kRtol)) << what;
      EXPECT_TRUE(all_close(g.download(gdw, C), dw, kAtol * N, kRtol)) << what;

      // deterministic: the same inputs give the same bits (fixed-order column sums, no atomics)
      float *gdx2 = g.upload(dx0), *gdw2 = g.upload(dw0);
      b.gpu->rmsnorm_backward(gdx2, gdw2, gdy, gx, gw, gr, N, C);
      EXPECT_TRUE(all_close(g.download(gdx2, dx.size()), g.download(gdx, dx.size()), 0, 0)) << what;
      EXPECT_TRUE(all_close(g.download(gdw2, C), g.download(gdw, C), 0, 0)) << what;
    }
}
INSTANTIATE_TEST_SUITE_P(Offsets, CudaRMSNorm, ::testing::Values(0.0f, 100.0f));

TEST(CudaLlamaOps, SwiGLUForwardAndBackward) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  for (auto [N, F] : {std::pair{1, 1}, {7, 13}, {33, 100}, {3, 257}, {64, 1536}, {130, 2560}}) {
    auto inp = rand_vec(size_t(N) * 2 * F, 31, -8.0f, 8.0f), dy = rand_vec(size_t(N) * F, 32);
    // a few gates where e^(−a) overflows or underflows fp32 (silu → −0 and → a; no NaN either way)
    const float extremes[] = {-120.0f, -90.0f, 90.0f, 120.0f, -0.0f};
    for (size_t i = 0; i < 5 && i < size_t(F); ++i) inp[i] = extremes[i];
    std::vector<float> y(size_t(N) * F), dinp(inp.size());
    b.cpu->swiglu_forward(y.data(), inp.data(), N, F);
    b.cpu->swiglu_backward(dinp.data(), inp.data(), dy.data(), N, F);
    DeviceBuffers g(*b.gpu);
    float *ginp = g.upload(inp), *gy = g.poisoned(y.size()), *gdinp = g.poisoned(dinp.size());
    b.gpu->swiglu_forward(gy, ginp, N, F);
    b.gpu->swiglu_backward(gdinp, ginp, g.upload(dy), N, F);
    EXPECT_TRUE(all_close(g.download(gy, y.size()), y, kAtol, kRtol)) << shape_name(N, F);
    EXPECT_TRUE(all_close(g.download(gdinp, dinp.size()), dinp, kAtol, kRtol)) << shape_name(N, F);
  }
}

namespace {
struct RopeShape {
  int NH, NKV, HS;
  float theta;
};
const RopeShape kRopeShapes[] = {{9, 3, 64, 10000.0f},  {4, 1, 128, 500000.0f}, {4, 2, 32, 100000.0f},
                                 {4, 4, 24, 10000.0f},  {2, 1, 2, 10000.0f},    {15, 5, 64, 100000.0f},
                                 {1, 1, 256, 10000.0f}, {3, 1, 6, 500.0f}};
std::string rope_name(const RopeShape& s) {
  return "NH " + std::to_string(s.NH) + " NKV " + std::to_string(s.NKV) + " hs " + std::to_string(s.HS) + " theta " +
         std::to_string(s.theta);
}
// Positions 0 .. 8192 in a shuffled order (both ends included), and a few of them repeated.
std::vector<int32_t> rope_positions(int N, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> pos(N);
  for (int n = 0; n < N; ++n) pos[n] = static_cast<int32_t>(r.below(8193));
  pos[0] = 0, pos[N - 1] = 8192;
  if (N > 2) pos[1] = 8191;
  return pos;
}
}  // namespace

TEST(CudaLlamaOps, RopeMatchesCpuBackendAndLeavesVAlone) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  for (const RopeShape& sh : kRopeShapes) {
    const int N = 203, W = (sh.NH + 2 * sh.NKV) * sh.HS;
    const auto pos = rope_positions(N, 41);
    const auto qkv = rand_vec(size_t(N) * W, 42), d = rand_vec(size_t(N) * W, 43);
    std::vector<float> fwd = qkv, bwd = d;
    b.cpu->rope_forward(fwd.data(), pos.data(), N, sh.NH, sh.NKV, sh.HS, sh.theta);
    b.cpu->rope_backward(bwd.data(), pos.data(), N, sh.NH, sh.NKV, sh.HS, sh.theta);
    DeviceBuffers g(*b.gpu);
    int32_t* gpos = g.upload(pos);
    float *gf = g.upload(qkv), *gb = g.upload(d);
    b.gpu->rope_forward(gf, gpos, N, sh.NH, sh.NKV, sh.HS, sh.theta);
    b.gpu->rope_backward(gb, gpos, N, sh.NH, sh.NKV, sh.HS, sh.theta);
    const auto hf = g.download(gf, fwd.size()), hb = g.download(gb, bwd.size());
    // sincosf / cosf differ from the CPU's by an ulp or two: |x| ≤ 1, so 2e-6 absolute
    EXPECT_TRUE(all_close(hf, fwd, 2e-6, 1e-5)) << rope_name(sh);
    EXPECT_TRUE(all_close(hb, bwd, 2e-6, 1e-5)) << rope_name(sh);
    // the v heads are not touched at all, in either direction
    std::vector<float> v_in, v_f, dv_in, dv_b;
    for (int n = 0; n < N; ++n)
      for (int k = (sh.NH + sh.NKV) * sh.HS; k < W; ++k) {
        const size_t i = size_t(n) * W + k;
        v_in.push_back(qkv[i]), v_f.push_back(hf[i]), dv_in.push_back(d[i]), dv_b.push_back(hb[i]);
      }
    EXPECT_TRUE(all_close(v_f, v_in, 0, 0)) << rope_name(sh);
    EXPECT_TRUE(all_close(dv_b, dv_in, 0, 0)) << rope_name(sh);
  }
}

// backward ∘ forward = identity (the backward is the transpose = inverse of the rotation), on the device.
TEST(CudaLlamaOps, RopeBackwardIsTheInverseRotation) {
  CAIRN_REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  for (const RopeShape& sh : kRopeShapes) {
    const int N = 97, W = (sh.NH + 2 * sh.NKV) * sh.HS;
    const auto pos = rope_positions(N, 51);
    const auto x = rand_vec(size_t(N) * W, 52);
    DeviceBuffers g(*gpu);
    int32_t* gpos = g.upload(pos);
    float* gx = g.upload(x);
    gpu->rope_forward(gx, gpos, N, sh.NH, sh.NKV, sh.HS, sh.theta);
    const auto rotated = g.download(gx, x.size());
    gpu->rope_backward(gx, gpos, N, sh.NH, sh.NKV, sh.HS, sh.theta);
    EXPECT_TRUE(all_close(g.download(gx, x.size()), x, 1e-6, 1e-6)) << rope_name(sh);
    // and the forward did rotate: pairs keep their norm, rows at position > 0 moved, position 0
    // (cos 1, sin 0 exactly) did not
    double moved = 0, norm_err = 0, pos0_err = 0;
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < sh.NH + sh.NKV; ++h)
        for (int i = 0; i < sh.HS / 2; ++i) {
          const size_t a = size_t(n) * W + size_t(h) * sh.HS + i, bb = a + sh.HS / 2;
          norm_err = std::max(norm_err, std::fabs(std::hypot(double(rotated[a]), double(rotated[bb])) -
                                                  std::hypot(double(x[a]), double(x[bb]))));
          moved += std::fabs(rotated[a] - x[a]);
          if (pos[n] == 0) pos0_err = std::max(pos0_err, double(std::fabs(rotated[a] - x[a])));
        }
    EXPECT_LT(norm_err, 1e-6) << rope_name(sh);
    EXPECT_GT(moved, 0.0) << rope_name(sh);
    EXPECT_EQ(pos0_err, 0.0) << rope_name(sh);
  }
}

// The Hugging Face formula, independent of the CPU backend: inv_freq_i = 1/θ^((2i)/HS) with the
// exponent and the power in fp32, angle = float(pos)·inv_freq_i in fp32, then cos/sin and the
// rotate-half rotation evaluated in double. The device's fp32 cosf/sinf land within a few ulp.
TEST(CudaLlamaOps, RopeMatchesHuggingFaceFormulaInDouble) {
  CAIRN_REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  for (const RopeShape& sh : kRopeShapes) {
    const int N = 64, W = (sh.NH + 2 * sh.NKV) * sh.HS, half = sh.HS / 2;
    const auto pos = rope_positions(N, 61);
    const auto x = rand_vec(size_t(N) * W, 62);
    std::vector<double> ref(x.begin(), x.end());
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < half; ++i) {
        const float inv = 1.0f / std::pow(sh.theta, static_cast<float>(2 * i) / static_cast<float>(sh.HS));
        const float a = static_cast<float>(pos[n]) * inv;
        const double c = std::cos(static_cast<double>(a)), s = std::sin(static_cast<double>(a));
        for (int h = 0; h < sh.NH + sh.NKV; ++h) {
          const size_t j = size_t(n) * W + size_t(h) * sh.HS + i;
          ref[j] = double(x[j]) * c - double(x[j + half]) * s;
          ref[j + half] = double(x[j + half]) * c + double(x[j]) * s;
        }
      }
    DeviceBuffers g(*gpu);
    float* gx = g.upload(x);
    gpu->rope_forward(gx, g.upload(pos), N, sh.NH, sh.NKV, sh.HS, sh.theta);
    EXPECT_TRUE(all_close(g.download(gx, x.size()), ref, 1e-6, 1e-6)) << rope_name(sh);
  }
}

// Odd or too large head sizes are refused before anything reaches the device (no GPU needed).
TEST(CudaLlamaOps, RopeRefusesHeadSizesItCannotRotate) {
  for (int HS : {0, 3, 258, 512})
    EXPECT_THROW(cuda::rope_forward(nullptr, nullptr, 1, 2, 1, HS, 10000.0f, 0), std::invalid_argument) << HS;
  EXPECT_THROW(cuda::rope_backward(nullptr, nullptr, 1, 2, 0, 64, 10000.0f, 0), std::invalid_argument);
}

TEST(CudaLlamaOps, EmbeddingWithoutLearnedPositions) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  for (auto [N, C] : {std::pair{77, 96}, {1, 1}, {300, 576}}) {
    const int V = 11;
    Rng r(71);
    std::vector<int32_t> ids(N), pos(N);
    for (int i = 0; i < N; ++i) ids[i] = static_cast<int32_t>(r.below(V)), pos[i] = static_cast<int32_t>(r.below(40));
    auto wte = rand_vec(size_t(V) * C, 72), de = rand_vec(size_t(N) * C, 73), dwte0 = rand_vec(size_t(V) * C, 74);
    std::vector<float> emb(size_t(N) * C), dwte = dwte0;
    b.cpu->embedding_forward(emb.data(), ids.data(), pos.data(), wte.data(), nullptr, N, C);
    b.cpu->embedding_backward(dwte.data(), nullptr, de.data(), ids.data(), pos.data(), N, C);
    DeviceBuffers g(*b.gpu);
    int32_t *gids = g.upload(ids), *gpos = g.upload(pos);
    float *gemb = g.poisoned(emb.size()), *gdwte = g.upload(dwte0);
    b.gpu->embedding_forward(gemb, gids, gpos, g.upload(wte), nullptr, N, C);
    b.gpu->embedding_backward(gdwte, nullptr, g.upload(de), gids, gpos, N, C);
    EXPECT_TRUE(all_close(g.download(gemb, emb.size()), emb, 0, 0)) << shape_name(N, C);
    EXPECT_TRUE(all_close(g.download(gdwte, dwte.size()), dwte, kAtol, kRtol)) << shape_name(N, C);
    // without wpe the positions are not read at all (kernels/kernels.h): a null pos is fine
    float* gemb2 = g.poisoned(emb.size());
    b.gpu->embedding_forward(gemb2, gids, nullptr, g.upload(wte), nullptr, N, C);
    EXPECT_TRUE(all_close(g.download(gemb2, emb.size()), emb, 0, 0)) << shape_name(N, C);
  }
}

}  // namespace cairn
