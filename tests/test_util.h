// Shared helpers for the tests: seeded random fills and a closeness check that reports the worst
// element and its index.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "util/rng.h"

namespace cairn::test {

inline std::vector<float> rand_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = lo + (hi - lo) * static_cast<float>(r.uniform());
  return v;
}
inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Passes when |a − b| ≤ atol + rtol·|b| everywhere (b is the reference).
template <class A, class B>
::testing::AssertionResult all_close(const A& a, const B& b, double atol, double rtol) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "size " << a.size() << " vs reference " << b.size();
  size_t worst = 0;
  double worst_excess = -1, worst_err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    const double excess = err - (atol + rtol * std::fabs(static_cast<double>(b[i])));
    if (!(err == err) || excess > worst_excess) worst_excess = (err == err) ? excess : 1e300, worst = i, worst_err = err;
  }
  if (worst_excess > 0)
    return ::testing::AssertionFailure() << "max error " << worst_err << " at index " << worst << ": got "
                                         << a[worst] << ", reference " << b[worst] << " (atol " << atol
                                         << ", rtol " << rtol << ")";
  return ::testing::AssertionSuccess() << "max excess " << worst_excess;
}

}  // namespace cairn::test
