// Reward-model diagnostics for `cairn eval` (pure functions over per-pair rewards and lengths):
// accuracy with a bootstrap interval, the length-only baseline, reward–length correlation (Pearson and
// Spearman), accuracy split by whether the chosen response is longer or shorter, and calibration of
// σ(r_c − r_r) against the labels (ECE over 10 equal-width bins, Brier score).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cairn {

struct PairRecord {
  double r_chosen = 0, r_rejected = 0;
  double label = 1;                      // P(chosen ≻ rejected)
  int64_t len_chosen = 0, len_rejected = 0;  // response lengths (characters)
  std::string principle;                 // empty: none
};

struct Interval {
  double value = 0, lo = 0, hi = 0;
};

// Pairs whose label is 0.5 are undecided and count for neither accuracy. Ties (r_c == r_r) are wrong.
bool pair_correct(const PairRecord& p);
bool pair_decided(const PairRecord& p);

// Accuracy over decided pairs with a percentile bootstrap 95% interval (deterministic in seed).
Interval accuracy_with_ci(const std::vector<PairRecord>& pairs, int resamples = 1000, uint64_t seed = 1);
// Accuracy of "the longer response wins" (equal lengths count as wrong, like reward ties).
double length_baseline_accuracy(const std::vector<PairRecord>& pairs);
double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);  // average ranks for ties

struct Calibration {
  double ece = 0, brier = 0;
  std::vector<double> bin_confidence, bin_label, bin_count;
};
Calibration calibration(const std::vector<PairRecord>& pairs, int bins = 10);

// Everything above as one JSON object (the `cairn eval --json` payload, minus run metadata).
nlohmann::json diagnostics_json(const std::vector<PairRecord>& pairs, double bt_loss);

}  // namespace cairn
