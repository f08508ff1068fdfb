// Eval diagnostics against hand-computed values on small cases.
#include <gtest/gtest.h>

#include <cmath>

#include "train/diagnostics.h"

namespace cairn {

TEST(Diagnostics, PearsonAndSpearman) {
  std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 6, 8, 10}, z = {1, 4, 9, 16, 100};
  EXPECT_NEAR(pearson(x, y), 1.0, 1e-12);
  EXPECT_NEAR(spearman(x, z), 1.0, 1e-12);  // monotone, not linear
  EXPECT_LT(pearson(x, z), 0.95);
  std::vector<double> neg = {5, 4, 3, 2, 1};
  EXPECT_NEAR(spearman(x, neg), -1.0, 1e-12);
  // ties get average ranks: x = (1, 2, 2, 3) → ranks (1, 2.5, 2.5, 4)
  std::vector<double> a = {1, 2, 2, 3}, b = {1, 2.5, 2.5, 4};
  EXPECT_NEAR(spearman(a, b), 1.0, 1e-12);
  // hand value: x=(1,2,3), y=(1,3,2): r = 0.5
  EXPECT_NEAR(pearson({1, 2, 3}, {1, 3, 2}), 0.5, 1e-12);
}

TEST(Diagnostics, AccuracyTiesAndUndecided) {
  std::vector<PairRecord> p(4);
  p[0].r_chosen = 1, p[0].r_rejected = 0;                  // right
  p[1].r_chosen = 0, p[1].r_rejected = 0;                  // tie: wrong
  p[2].r_chosen = 0, p[2].r_rejected = 1, p[2].label = 0;  // label 0: rejected is better: right
  p[3].label = 0.5;                                        // undecided: ignored
  Interval a = accuracy_with_ci(p, 200);
  EXPECT_NEAR(a.value, 2.0 / 3.0, 1e-12);
  EXPECT_LE(a.lo, a.value);
  EXPECT_GE(a.hi, a.value);
}

TEST(Diagnostics, LengthBaselineAndSplit) {
  std::vector<PairRecord> p(3);
  p[0].len_chosen = 100, p[0].len_rejected = 10, p[0].r_chosen = 1;  // longer preferred, model right
  p[1].len_chosen = 10, p[1].len_rejected = 100, p[1].r_rejected = 1;  // shorter preferred, model wrong
  p[2].len_chosen = 50, p[2].len_rejected = 50, p[2].r_chosen = 1;   // equal
  EXPECT_NEAR(length_baseline_accuracy(p), 1.0 / 3.0, 1e-12);
  auto j = diagnostics_json(p, 0.5);
  EXPECT_EQ(j["by_length"]["preferred_longer"]["pairs"], 1);
  EXPECT_EQ(j["by_length"]["preferred_longer"]["accuracy"], 1.0);
  EXPECT_EQ(j["by_length"]["preferred_shorter"]["accuracy"], 0.0);
  EXPECT_EQ(j["by_length"]["equal_length"]["pairs"], 1);
}

TEST(Diagnostics, CalibrationOfPerfectlyCalibratedBins) {
  // Δ = 0 → σ = 0.5 with label 0.5: calibrated; Brier = 0.
  std::vector<PairRecord> p(10);
  for (auto& x : p) x.label = 0.5;
  Calibration c = calibration(p);
  EXPECT_NEAR(c.ece, 0.0, 1e-12);
  EXPECT_NEAR(c.brier, 0.0, 1e-12);
  // Δ = log 3 → σ = 0.75, labels 1: ECE = 0.25, Brier = 0.0625.
  for (auto& x : p) x.label = 1, x.r_chosen = std::log(3.0);
  c = calibration(p);
  EXPECT_NEAR(c.ece, 0.25, 1e-12);
  EXPECT_NEAR(c.brier, 0.0625, 1e-12);
}

}  // namespace cairn
