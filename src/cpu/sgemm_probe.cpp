// Measures the machine's SGEMM throughput with the same GEMM path (Eigen, rows split across our
// threads) the CPU backend uses: the ceiling against which model and attention FLOP rates are quoted.
#include "cpu/sgemm_probe.h"

#include <vector>

#include "cpu/ops.h"
#include "util/rng.h"
#include "util/timing.h"

namespace cairn::cpu {

double measure_sgemm_gflops(int M, int K, int Nout, int repeats) {
  std::vector<float> a(static_cast<size_t>(M) * K), w(static_cast<size_t>(Nout) * K), c(static_cast<size_t>(M) * Nout);
  Rng r(1);
  for (auto& x : a) x = static_cast<float>(r.uniform() - 0.5);
  for (auto& x : w) x = static_cast<float>(r.uniform() - 0.5);
  linear_forward(c.data(), a.data(), w.data(), nullptr, M, K, Nout);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now_seconds();
    linear_forward(c.data(), a.data(), w.data(), nullptr, M, K, Nout);
    t.push_back(now_seconds() - t0);
  }
  return 2.0 * M * K * Nout / median(t) / 1e9;
}

}  // namespace cairn::cpu
