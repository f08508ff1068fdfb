// Shared helpers of the whole-model tests (tests/test_model.cpp, tests/test_llama.cpp): O(1) random
// parameters, random token sequences, a packed batch of them, and the whole-model gradient check.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cairn/model.h"
#include "cairn/params.h"
#include "reference/model_ref.h"
#include "test_util.h"

namespace cairn::test {

// Random parameters of O(1) scale (not the tiny init), so every gradient is well above round-off.
inline std::vector<float> random_params(const ParamTable& t, uint64_t seed) {
  std::vector<float> p = rand_vec(t.total(), seed, -0.4f, 0.4f);
  for (const auto& info : t.tensors())
    if (info.init == InitKind::Ones)
      for (size_t i = 0; i < info.numel; ++i) p[info.offset + i] += 1.0f;
  return p;
}

inline std::vector<std::vector<int32_t>> random_seqs(const std::vector<int>& lens, int V, uint64_t seed) {
  Rng r(seed);
  std::vector<std::vector<int32_t>> out;
  for (int L : lens) {
    std::vector<int32_t> s(L);
    for (auto& t : s) t = static_cast<int32_t>(r.below(V));
    out.push_back(s);
  }
  return out;
}

inline TokenBatch make_batch(const std::vector<std::vector<int32_t>>& seqs) {
  TokenBatch b;
  b.clear();
  for (const auto& s : seqs) b.add(s);
  return b;
}

// The gradient of L = Σ R ⊙ rewards(seqs) with respect to every parameter p (set in m, whose config
// is cfg): one backward of m against central finite differences of the double-precision reference
// (step 1e-5), tensor by tensor so a failure names the parameter. Returns the backward's gradient.
inline std::vector<float> expect_parameter_gradients_match_fd(Model& m, const ModelConfig& cfg, const std::vector<float>& p,
                                                              const std::vector<std::vector<int32_t>>& seqs,
                                                              const std::vector<float>& R) {
  std::vector<float> r, g(m.num_params());
  m.zero_grads();
  m.forward(make_batch(seqs), r, true);
  m.backward(R);
  m.get_grads(g.data());
  const auto num = ref::fd_grad(
      [&](const ref::Vec& v) {
        const auto rw = ref::model_rewards(cfg, m.table(), v, seqs);
        double s = 0;
        for (size_t i = 0; i < rw.size(); ++i) s += rw[i] * R[i];
        return s;
      },
      to_double(p), 1e-5);
  for (const auto& t : m.table().tensors()) {
    std::vector<float> ga(g.begin() + t.offset, g.begin() + t.offset + t.numel);
    std::vector<double> gn(num.begin() + t.offset, num.begin() + t.offset + t.numel);
    EXPECT_TRUE(all_close(ga, gn, 5e-5, 3e-3)) << t.name;
  }
  return g;
}

}  // namespace cairn::test
