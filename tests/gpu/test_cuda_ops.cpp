// Every CUDA backend op against the CPU backend (itself checked against double references and finite
// differences in tests/), on the same random inputs, awkward sizes, NaN-poisoned outputs, and random
// prior contents in accumulated (+=) gradients. Tolerances: fp32 ops |err| ≤ 1e-5 + 1e-4·|ref|;
// GEMMs with fp32 math 1e-5 + 1e-5·|ref|, with bf16 math ‖err‖/‖ref‖ ≤ 1e-2 (bf16 operand rounding).
#include <gtest/gtest.h>

#include <numeric>

#include "gpu/gpu_util.h"
#include "util/rng.h"

namespace cairn {
using test::all_close;
using test::DeviceBuffers;
using test::rand_vec;
using test::rel_l2;

namespace {
constexpr double kAtol = 1e-5, kRtol = 1e-4;

struct Backends {
  std::unique_ptr<Backend> cpu = make_backend("cpu", 2);
  std::unique_ptr<Backend> gpu;
  explicit Backends(CudaMath m = CudaMath::FP32) : gpu(make_cuda_backend(0, m)) {}
};
}  // namespace

TEST(CudaOps, LinearForwardAndBackwardFp32Math) {
  CAIRN_REQUIRE_GPU();
  Backends b(CudaMath::FP32);
  for (auto [N, I, O] : {std::tuple{1, 1, 1}, {5, 7, 3}, {33, 31, 17}, {64, 48, 96}, {130, 257, 129}}) {
    auto x = rand_vec(N * I, 1), W = rand_vec(O * I, 2), bias = rand_vec(O, 3), dy = rand_vec(N * O, 4);
    auto dW0 = rand_vec(O * I, 5), db0 = rand_vec(O, 6);
    std::vector<float> y(N * O), dx(N * I), dW = dW0, db = db0;
    b.cpu->linear_forward(y.data(), x.data(), W.data(), bias.data(), N, I, O);
    b.cpu->linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), N, I, O);
    DeviceBuffers g(*b.gpu);
    float *gx = g.upload(x), *gW = g.upload(W), *gb = g.upload(bias), *gdy = g.upload(dy);
    float *gy = g.poisoned(N * O), *gdx = g.poisoned(N * I), *gdW = g.upload(dW0), *gdb = g.upload(db0);
    b.gpu->linear_forward(gy, gx, gW, gb, N, I, O);
    b.gpu->linear_backward(gdx, gdW, gdb, gdy, gx, gW, N, I, O);
    const double tol = 1e-5 * std::sqrt(static_cast<double>(std::max(I, N)));
    EXPECT_TRUE(all_close(g.download(gy, y.size()), y, tol, 1e-5)) << N << "x" << I << "x" << O;
    EXPECT_TRUE(all_close(g.download(gdx, dx.size()), dx, tol, 1e-5)) << N << "x" << I << "x" << O;
    EXPECT_TRUE(all_close(g.download(gdW, dW.size()), dW, tol, 1e-5)) << N << "x" << I << "x" << O;
    EXPECT_TRUE(all_close(g.download(gdb, db.size()), db, tol, 1e-5)) << N << "x" << I << "x" << O;
  }
}

TEST(CudaOps, LinearBf16MathWithinBf16Tolerance) {
  CAIRN_REQUIRE_GPU();
  Backends b(CudaMath::BF16);
  const int N = 300, I = 256, O = 384;
  auto x = rand_vec(N * I, 11), W = rand_vec(O * I, 12), bias = rand_vec(O, 13), dy = rand_vec(N * O, 14);
  std::vector<float> y(N * O), dx(N * I), dW(O * I, 0.0f), db(O, 0.0f);
  b.cpu->linear_forward(y.data(), x.data(), W.data(), bias.data(), N, I, O);
  b.cpu->linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), N, I, O);
  DeviceBuffers g(*b.gpu);
  float *gx = g.upload(x), *gW = g.upload(W), *gb = g.upload(bias), *gdy = g.upload(dy);
  float *gy = g.poisoned(N * O), *gdx = g.poisoned(N * I), *gdW = g.upload(std::vector<float>(O * I, 0.0f));
  float* gdb = g.upload(std::vector<float>(O, 0.0f));
  b.gpu->linear_forward(gy, gx, gW, gb, N, I, O);
  b.gpu->linear_backward(gdx, gdW, gdb, gdy, gx, gW, N, I, O);
  const double e_y = rel_l2(g.download(gy, y.size()), y), e_dx = rel_l2(g.download(gdx, dx.size()), dx);
  const double e_dW = rel_l2(g.download(gdW, dW.size()), dW), e_db = rel_l2(g.download(gdb, db.size()), db);
  EXPECT_LT(e_y, 1e-2);
  EXPECT_LT(e_dx, 1e-2);
  EXPECT_LT(e_dW, 1e-2);
  EXPECT_LT(e_db, 1e-5);  // the bias gradient is an fp32 column sum
  std::printf("bf16 GEMM relative errors: y %.2e  dx %.2e  dW %.2e  db %.2e\n", e_y, e_dx, e_dW, e_db);
}

class CudaLayerNorm : public ::testing::TestWithParam<float> {};  // param: offset added to inputs

TEST_P(CudaLayerNorm, ForwardAndBackward) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  for (auto [N, C] : {std::pair{1, 13}, {31, 64}, {33, 100}, {127, 512}}) {
    auto x = rand_vec(N * C, 21);
    for (auto& v : x) v += GetParam();
    auto w = rand_vec(C, 22, 0.5f, 1.5f), bias = rand_vec(C, 23), dy = rand_vec(N * C, 24);
    auto dx0 = rand_vec(N * C, 25), dw0 = rand_vec(C, 26), db0 = rand_vec(C, 27);
    std::vector<float> y(N * C), mean(N), rstd(N), dx = dx0, dw = dw0, db = db0;
    b.cpu->layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), N, C);
    b.cpu->layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    DeviceBuffers g(*b.gpu);
    float *gx = g.upload(x), *gw = g.upload(w), *gb = g.upload(bias), *gdy = g.upload(dy);
    float *gy = g.poisoned(N * C), *gm = g.poisoned(N), *gr = g.poisoned(N);
    float *gdx = g.upload(dx0), *gdw = g.upload(dw0), *gdb = g.upload(db0);
    b.gpu->layernorm_forward(gy, gm, gr, gx, gw, gb, N, C);
    b.gpu->layernorm_backward(gdx, gdw, gdb, gdy, gx, gw, gm, gr, N, C);
    const double tol = GetParam() > 10 ? 1e-3 : kAtol;  // fp32 rounding of |x|≈100 inputs
    EXPECT_TRUE(all_close(g.download(gy, y.size()), y, tol, kRtol)) << N << "x" << C;
    EXPECT_TRUE(all_close(g.download(gm, N), mean, tol, kRtol));
    EXPECT_TRUE(all_close(g.download(gr, N), rstd, tol, kRtol));
    EXPECT_TRUE(all_close(g.download(gdx, dx.size()), dx, tol, kRtol)) << N << "x" << C;
    EXPECT_TRUE(all_close(g.download(gdw, C), dw, tol * N, kRtol)) << N << "x" << C;
    EXPECT_TRUE(all_close(g.download(gdb, C), db, kAtol * N, kRtol)) << N << "x" << C;
  }
}
INSTANTIATE_TEST_SUITE_P(Offsets, CudaLayerNorm, ::testing::Values(0.0f, 100.0f));

TEST(CudaOps, ElementwiseAndRowOps) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  const size_t n = 100003;
  auto x = rand_vec(n, 31, -4.0f, 4.0f), y = rand_vec(n, 32), dy = rand_vec(n, 33);
  std::vector<float> gl(n), dgl(n), sum = x;
  b.cpu->gelu_forward(gl.data(), x.data(), n);
  b.cpu->gelu_backward(dgl.data(), x.data(), dy.data(), n);
  b.cpu->add_inplace(sum.data(), y.data(), n);
  DeviceBuffers g(*b.gpu);
  float *gx = g.upload(x), *gy = g.upload(y), *gdy = g.upload(dy), *ggl = g.poisoned(n), *gdgl = g.poisoned(n);
  float* gsum = g.upload(x);
  b.gpu->gelu_forward(ggl, gx, n);
  b.gpu->gelu_backward(gdgl, gx, gdy, n);
  b.gpu->add_inplace(gsum, gy, n);
  EXPECT_TRUE(all_close(g.download(ggl, n), gl, kAtol, kRtol));
  EXPECT_TRUE(all_close(g.download(gdgl, n), dgl, kAtol, kRtol));
  EXPECT_TRUE(all_close(g.download(gsum, n), sum, 0, 0));

  // embeddings, with repeated ids and positions (the backward must accumulate them all)
  const int N = 77, C = 96, V = 11, T = 40;
  Rng r(34);
  std::vector<int32_t> ids(N), pos(N);
  for (int i = 0; i < N; ++i) ids[i] = static_cast<int32_t>(r.below(V)), pos[i] = static_cast<int32_t>(r.below(T));
  auto wte = rand_vec(V * C, 35), wpe = rand_vec(T * C, 36), de = rand_vec(N * C, 37);
  auto dwte0 = rand_vec(V * C, 38), dwpe0 = rand_vec(T * C, 39);
  std::vector<float> emb(N * C), dwte = dwte0, dwpe = dwpe0;
  b.cpu->embedding_forward(emb.data(), ids.data(), pos.data(), wte.data(), wpe.data(), N, C);
  b.cpu->embedding_backward(dwte.data(), dwpe.data(), de.data(), ids.data(), pos.data(), N, C);
  int32_t *gids = g.upload(ids), *gpos = g.upload(pos);
  float *gemb = g.poisoned(N * C), *gdwte = g.upload(dwte0), *gdwpe = g.upload(dwpe0);
  b.gpu->embedding_forward(gemb, gids, gpos, g.upload(wte), g.upload(wpe), N, C);
  b.gpu->embedding_backward(gdwte, gdwpe, g.upload(de), gids, gpos, N, C);
  EXPECT_TRUE(all_close(g.download(gemb, emb.size()), emb, 0, 0));
  EXPECT_TRUE(all_close(g.download(gdwte, dwte.size()), dwte, kAtol, kRtol));
  EXPECT_TRUE(all_close(g.download(gdwpe, dwpe.size()), dwpe, kAtol, kRtol));

  // gather / scatter of rows
  const std::vector<int32_t> rows = {5, 0, 76, 33};
  std::vector<float> gathered(rows.size() * C), scat = dwte0;
  auto src = rand_vec(N * C, 40), dsrc0 = rand_vec(N * C, 41), upd = rand_vec(rows.size() * C, 42);
  std::vector<float> dsrc = dsrc0;
  b.cpu->gather_rows(gathered.data(), src.data(), rows.data(), 4, C);
  b.cpu->scatter_add_rows(dsrc.data(), upd.data(), rows.data(), 4, C);
  int32_t* grows = g.upload(rows);
  float *ggat = g.poisoned(gathered.size()), *gdsrc = g.upload(dsrc0);
  b.gpu->gather_rows(ggat, g.upload(src), grows, 4, C);
  b.gpu->scatter_add_rows(gdsrc, g.upload(upd), grows, 4, C);
  EXPECT_TRUE(all_close(g.download(ggat, gathered.size()), gathered, 0, 0));
  EXPECT_TRUE(all_close(g.download(gdsrc, dsrc.size()), dsrc, 0, 0));
}

TEST(CudaOps, BradleyTerryLossWithHeadsLabelsMarginsWeightsAndCentering) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  const int B = 80, H = 3, P = 37;
  Rng r(51);
  std::vector<PairTarget> pairs(P);
  for (auto& p : pairs) {
    p.chosen = static_cast<int32_t>(r.below(B)), p.rejected = static_cast<int32_t>(r.below(B));
    const float labels[] = {1.0f, 0.5f, 0.3f, 0.8f, 0.0f};
    p.label = labels[r.below(5)];
    p.margin = static_cast<float>(r.uniform()) - 0.5f;
    p.weight = 0.5f + static_cast<float>(r.uniform());
    p.head = static_cast<int32_t>(r.below(H + 1)) - 1;
  }
  pairs[0].chosen = B - 1;  // the largest index sets B
  auto rewards = rand_vec(B * H, 52, -3.0f, 3.0f), hw = std::vector<float>{0.5f, 0.3f, 0.2f};
  for (float center : {0.0f, 0.1f}) {
    std::vector<float> dr(B * H, 0.0f);
    const LossStats c = b.cpu->bt_loss(dr.data(), rewards.data(), pairs.data(), P, H, hw.data(), center);
    DeviceBuffers g(*b.gpu);
    float* gdr = g.poisoned(B * H);
    const LossStats s = b.gpu->bt_loss(gdr, g.upload(rewards), g.upload(pairs), P, H, g.upload(hw), center);
    EXPECT_NEAR(s.loss, c.loss, 1e-9 * std::fabs(c.loss));
    EXPECT_NEAR(s.bt_loss, c.bt_loss, 1e-9 * std::fabs(c.bt_loss));
    EXPECT_EQ(s.n_correct, c.n_correct);
    EXPECT_EQ(s.n_decided, c.n_decided);
    EXPECT_TRUE(all_close(g.download(gdr, dr.size()), dr, 1e-7, 1e-6));
  }
}

TEST(CudaOps, SumOfSquaresAndAdamW) {
  CAIRN_REQUIRE_GPU();
  Backends b;
  const size_t n = 1000003;
  auto x = rand_vec(n, 61);
  DeviceBuffers g(*b.gpu);
  float* gx = g.upload(x);
  const double c = b.cpu->sum_squares(x.data(), n), s = b.gpu->sum_squares(gx, n);
  EXPECT_NEAR(s, c, 1e-12 * c);
  EXPECT_EQ(s, b.gpu->sum_squares(gx, n));  // deterministic

  const size_t m = 100007;
  auto p = rand_vec(m, 62), gr = rand_vec(m, 63), m1 = rand_vec(m, 64, -0.1f, 0.1f), v1 = rand_vec(m, 65, 0.0f, 0.01f);
  AdamWHyper h;
  h.lr = 3e-3f, h.weight_decay = 0.01f, h.grad_scale = 0.7f, h.step = 5;
  float *gp = g.upload(p), *gg = g.upload(gr), *gm = g.upload(m1), *gv = g.upload(v1);
  b.cpu->adamw_update(p.data(), gr.data(), m1.data(), v1.data(), m, h);
  b.gpu->adamw_update(gp, gg, gm, gv, m, h);
  EXPECT_TRUE(all_close(g.download(gp, m), p, 1e-7, 1e-5));
  EXPECT_TRUE(all_close(g.download(gm, m), m1, 1e-8, 1e-5));
  EXPECT_TRUE(all_close(g.download(gv, m), v1, 1e-9, 1e-5));
}

}  // namespace cairn

namespace cairn {

// Packed batches change the GEMM shapes every step: the plan cache starts over past its bound, and
// results stay right across the restart.
TEST(CudaOps, LinearStaysRightAcrossManyShapes) {
  CAIRN_REQUIRE_GPU();
  auto cpu = make_backend("cpu", 2);
  auto gpu = make_cuda_backend(0, CudaMath::FP32);
  const int I = 16, O = 24, kMax = 1300;
  auto x = test::rand_vec(size_t(kMax) * I, 71), W = test::rand_vec(O * I, 72), b = test::rand_vec(O, 73);
  test::DeviceBuffers g(*gpu);
  float *gx = g.upload(x), *gW = g.upload(W), *gb = g.upload(b), *gy = g.alloc<float>(size_t(kMax) * O);
  for (int N = 1; N <= kMax; ++N) {
    gpu->linear_forward(gy, gx, gW, gb, N, I, O);
    if (N % 400 != 0 && N != kMax) continue;
    std::vector<float> y(size_t(N) * O);
    cpu->linear_forward(y.data(), x.data(), W.data(), b.data(), N, I, O);
    EXPECT_TRUE(test::all_close(g.download(gy, y.size()), y, 1e-5, 1e-5)) << "N " << N;
  }
}

}  // namespace cairn
