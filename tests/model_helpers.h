// Shared helpers of the whole-model tests (tests/test_model.cpp, tests/test_llama.cpp): O(1) random
// parameters, random token sequences, and a packed batch of them.
#pragma once
#include <cstdint>
#include <vector>

#include "cairn/model.h"
#include "cairn/params.h"
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

}  // namespace cairn::test
