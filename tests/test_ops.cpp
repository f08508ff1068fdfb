// Every CPU op's backward against central finite differences of the independent double reference
// (tests/reference). Objective: L = Σ R ⊙ op(x) for a random R, so dout = R. Parameter gradients are
// checked as increments over random prior contents (they must accumulate with +=).
// Tolerance: fp32 analytic vs double numeric, |err| ≤ 2e-5 + 2e-3·|ref|.
#include <gtest/gtest.h>

#include "cpu/ops.h"
#include "reference/model_ref.h"
#include "test_util.h"

namespace cairn {
using test::all_close;
using test::rand_vec;
using test::to_double;

static double dot(const ref::Vec& a, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * r[i];
  return s;
}
static std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}
constexpr double kAtol = 2e-5, kRtol = 2e-3;

TEST(Ops, LinearForwardMatchesReference) {
  for (auto [N, I, O] : {std::tuple{1, 1, 1}, {5, 7, 3}, {33, 31, 17}, {64, 48, 96}}) {
    auto x = rand_vec(N * I, 1), W = rand_vec(O * I, 2), b = rand_vec(O, 3);
    std::vector<float> y(N * O);
    cpu::linear_forward(y.data(), x.data(), W.data(), b.data(), N, I, O);
    auto Wd = to_double(W), bd = to_double(b);
    EXPECT_TRUE(all_close(y, ref::linear(to_double(x), Wd.data(), bd.data(), N, I, O), 1e-5, 1e-5));
  }
}

TEST(Ops, LinearBackwardFiniteDifferences) {
  const int N = 6, I = 5, O = 4;
  auto x = rand_vec(N * I, 11), W = rand_vec(O * I, 12), b = rand_vec(O, 13), R = rand_vec(N * O, 14);
  auto dW0 = rand_vec(O * I, 15), db0 = rand_vec(O, 16);
  std::vector<float> dx(N * I), dW = dW0, db = db0;
  cpu::linear_backward(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), N, I, O);
  auto xd = to_double(x), Wd = to_double(W), bd = to_double(b);
  auto num_x = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::linear(v, Wd.data(), bd.data(), N, I, O), R); }, xd);
  auto num_W = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::linear(xd, v.data(), bd.data(), N, I, O), R); }, Wd);
  auto num_b = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::linear(xd, Wd.data(), v.data(), N, I, O), R); }, bd);
  EXPECT_TRUE(all_close(dx, num_x, kAtol, kRtol));
  EXPECT_TRUE(all_close(minus(dW, dW0), num_W, kAtol, kRtol));
  EXPECT_TRUE(all_close(minus(db, db0), num_b, kAtol, kRtol));
}

class LayerNormTest : public ::testing::TestWithParam<float> {};  // param: offset added to inputs

TEST_P(LayerNormTest, ForwardAndBackward) {
  const int N = 7, C = 13;
  const float offset = GetParam();
  auto x = rand_vec(N * C, 21);
  for (auto& v : x) v += offset;
  auto w = rand_vec(C, 22, 0.5f, 1.5f), b = rand_vec(C, 23), R = rand_vec(N * C, 24);
  std::vector<float> y(N * C), mean(N), rstd(N);
  cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  auto xd = to_double(x), wd = to_double(w), bd = to_double(b);
  EXPECT_TRUE(all_close(y, ref::layernorm(xd, wd.data(), bd.data(), N, C), 1e-4, 1e-4));

  auto dx0 = rand_vec(N * C, 25), dw0 = rand_vec(C, 26), db0 = rand_vec(C, 27);
  auto dx = dx0, dw = dw0, db = db0;
  cpu::layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  const double h = offset > 10 ? 1e-4 : 1e-6;
  auto num_x = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::layernorm(v, wd.data(), bd.data(), N, C), R); }, xd, h);
  auto num_w = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::layernorm(xd, v.data(), bd.data(), N, C), R); }, wd);
  auto num_b = ref::fd_grad([&](const ref::Vec& v) { return dot(ref::layernorm(xd, wd.data(), v.data(), N, C), R); }, bd);
  const double tol = offset > 10 ? 1e-3 : kAtol;  // fp32 input rounding at |x|≈100 limits agreement
  EXPECT_TRUE(all_close(minus(dx, dx0), num_x, tol, kRtol));
  EXPECT_TRUE(all_close(minus(dw, dw0), num_w, tol, kRtol));
  EXPECT_TRUE(all_close(minus(db, db0), num_b, kAtol, kRtol));
}
INSTANTIATE_TEST_SUITE_P(Offsets, LayerNormTest, ::testing::Values(0.0f, 100.0f));

TEST(Ops, GeluForwardAndBackward) {
  const size_t n = 1000;
  auto x = rand_vec(n, 31, -6.0f, 6.0f), R = rand_vec(n, 32);
  std::vector<float> y(n), dx(n);
  cpu::gelu_forward(y.data(), x.data(), n);
  cpu::gelu_backward(dx.data(), x.data(), R.data(), n);
  ref::Vec yr(n), num(n);
  for (size_t i = 0; i < n; ++i) {
    yr[i] = ref::gelu(x[i]);
    num[i] = R[i] * (ref::gelu(x[i] + 1e-6) - ref::gelu(x[i] - 1e-6)) / 2e-6;
  }
  EXPECT_TRUE(all_close(y, yr, 1e-6, 1e-5));
  EXPECT_TRUE(all_close(dx, num, kAtol, kRtol));
}

TEST(Ops, EmbeddingForwardAndBackwardAccumulate) {
  const int V = 9, T = 6, N = 20, C = 11;
  auto wte = rand_vec(V * C, 41), wpe = rand_vec(T * C, 42), R = rand_vec(N * C, 43);
  std::vector<int32_t> ids(N), pos(N);
  Rng rng(44);
  for (int n = 0; n < N; ++n) ids[n] = static_cast<int32_t>(rng.below(V)), pos[n] = n % T;
  std::vector<float> y(N * C);
  cpu::embedding_forward(y.data(), ids.data(), pos.data(), wte.data(), wpe.data(), N, C);
  auto dte0 = rand_vec(V * C, 45), dpe0 = rand_vec(T * C, 46);
  auto dte = dte0, dpe = dpe0;
  cpu::embedding_backward(dte.data(), dpe.data(), R.data(), ids.data(), pos.data(), N, C);
  ref::Vec yr(N * C), gte(V * C, 0.0), gpe(T * C, 0.0);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      yr[n * C + c] = static_cast<double>(wte[ids[n] * C + c]) + wpe[pos[n] * C + c];
      gte[ids[n] * C + c] += R[n * C + c];
      gpe[pos[n] * C + c] += R[n * C + c];
    }
  EXPECT_TRUE(all_close(y, yr, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(minus(dte, dte0), gte, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(minus(dpe, dpe0), gpe, 1e-5, 1e-5));
}

TEST(Ops, GatherScatterRows) {
  const int N = 10, C = 5;
  auto x = rand_vec(N * C, 51), d = rand_vec(3 * C, 52);
  std::vector<int32_t> rows = {9, 0, 4};
  std::vector<float> g(3 * C), acc(N * C, 1.0f);
  cpu::gather_rows(g.data(), x.data(), rows.data(), 3, C);
  cpu::scatter_add_rows(acc.data(), d.data(), rows.data(), 3, C);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < C; ++c) {
      EXPECT_EQ(g[r * C + c], x[rows[r] * C + c]);
      EXPECT_EQ(acc[rows[r] * C + c], 1.0f + d[r * C + c]);
    }
  EXPECT_EQ(acc[1 * C], 1.0f);
}

// Double-precision Bradley–Terry loss written directly from docs/model.md#loss, for the loss tests.
static double ref_bt(const ref::Vec& r, const std::vector<PairTarget>& pairs, int H, const std::vector<float>& alpha,
                     double center) {
  auto rew = [&](int b, int head) {
    if (head >= 0) return r[b * H + head];
    double s = 0;
    for (int h = 0; h < H; ++h) s += alpha[h] * r[b * H + h];
    return s;
  };
  double num = 0, den = 0, c2 = 0;
  for (const auto& p : pairs) {
    const double rc = rew(p.chosen, p.head), rr = rew(p.rejected, p.head), d = rc - rr - p.margin;
    const double ls = -std::log(1 / (1 + std::exp(-d))), lr = -std::log(1 / (1 + std::exp(d)));
    num += p.weight * (p.label * ls + (1 - p.label) * lr);
    den += p.weight;
    c2 += (rc + rr) * (rc + rr);
  }
  return num / den + center * c2 / pairs.size();
}

TEST(Ops, BradleyTerryLossAndGradient) {
  const int B = 8, H = 3;
  auto r = rand_vec(B * H, 61, -3.0f, 3.0f);
  std::vector<float> alpha = {0.5f, 0.3f, 0.2f};
  std::vector<PairTarget> pairs = {
      {0, 1, 1.0f, 0.0f, 1.0f, -1}, {2, 3, 0.7f, 0.5f, 2.0f, 0}, {4, 5, 0.2f, -0.3f, 0.5f, 2},
      {6, 7, 0.5f, 0.0f, 1.0f, 1},  {1, 6, 1.0f, 1.0f, 3.0f, -1},
  };
  for (float center : {0.0f, 0.1f}) {
    std::vector<float> dr(B * H, 99.0f);
    LossStats st = cpu::bt_loss(dr.data(), r.data(), pairs.data(), pairs.size(), H, alpha.data(), center);
    auto rd = to_double(r);
    EXPECT_NEAR(st.loss, ref_bt(rd, pairs, H, alpha, center), 1e-7);  // the reference evaluates −log σ directly
    auto num = ref::fd_grad([&](const ref::Vec& v) { return ref_bt(v, pairs, H, alpha, center); }, rd);
    EXPECT_TRUE(all_close(dr, num, 1e-6, 1e-5));
    EXPECT_EQ(st.n_decided, 4);  // the label-0.5 pair is not decided
  }
}

TEST(Ops, BradleyTerryAccuracyCountsTiesAsWrong) {
  std::vector<float> r = {1.0f, 1.0f, 2.0f, 0.0f, 0.0f, 3.0f};
  std::vector<float> alpha = {1.0f};
  std::vector<PairTarget> pairs = {{0, 1}, {2, 3}, {4, 5}, {5, 4, 0.0f}};  // tie, right, wrong, right (label 0)
  std::vector<float> dr(6);
  LossStats st = cpu::bt_loss(dr.data(), r.data(), pairs.data(), 4, 1, alpha.data(), 0.0f);
  EXPECT_EQ(st.n_decided, 4);
  EXPECT_EQ(st.n_correct, 1);
}

TEST(Ops, AdamWMatchesClosedForm) {
  // several 16,384-element chunks (threaded, vectorised) and a ragged tail
  const size_t n = 3 * 16384 + 37;
  auto p = rand_vec(n, 71), g = rand_vec(n, 72), m = rand_vec(n, 73, 0.0f, 0.1f), v = rand_vec(n, 74, 0.0f, 0.1f);
  auto p0 = p, m0 = m, v0 = v;
  AdamWHyper h;
  h.lr = 1e-2f, h.weight_decay = 0.1f, h.grad_scale = 0.5f, h.step = 3;
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, h);
  for (size_t i = 0; i < n; ++i) {
    const double gi = g[i] * 0.5, mi = 0.9 * m0[i] + 0.1 * gi, vi = 0.999 * v0[i] + 0.001 * gi * gi;
    const double mh = mi / (1 - std::pow(0.9, 3)), vh = vi / (1 - std::pow(0.999, 3));
    const double pi = p0[i] - 1e-2 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * p0[i]);
    EXPECT_NEAR(m[i], mi, 1e-6);
    EXPECT_NEAR(v[i], vi, 1e-7);
    EXPECT_NEAR(p[i], pi, 1e-5);
  }
  double ss = 0;
  for (float x : g) ss += static_cast<double>(x) * x;
  EXPECT_NEAR(cpu::sum_squares(g.data(), n), ss, 1e-12 * ss);
  // zero second moments and gradients (frozen or unused rows): the update is decay alone, no NaN
  std::vector<float> pz(n, 0.5f), gz(n, 0.0f), mz(n, 0.0f), vz(n, 0.0f);
  cpu::adamw_update(pz.data(), gz.data(), mz.data(), vz.data(), n, h);
  for (size_t i = 0; i < n; i += 997) EXPECT_FLOAT_EQ(pz[i], 0.5f - 1e-2f * 0.1f * 0.5f) << i;
}

}  // namespace cairn
