// Reward-model diagnostics, see diagnostics.h.
#include "train/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "util/rng.h"

namespace cairn {

bool pair_decided(const PairRecord& p) { return p.label != 0.5; }
bool pair_correct(const PairRecord& p) {
  return p.label > 0.5 ? p.r_chosen > p.r_rejected : p.r_chosen < p.r_rejected;
}

static double accuracy_of(const std::vector<PairRecord>& pairs, const std::vector<size_t>& idx) {
  long n = 0, c = 0;
  for (size_t i : idx)
    if (pair_decided(pairs[i])) ++n, c += pair_correct(pairs[i]);
  return n ? static_cast<double>(c) / n : 0.0;
}

Interval accuracy_with_ci(const std::vector<PairRecord>& pairs, int resamples, uint64_t seed) {
  std::vector<size_t> all(pairs.size());
  std::iota(all.begin(), all.end(), 0);
  Interval out;
  out.value = accuracy_of(pairs, all);
  if (pairs.empty() || resamples <= 0) return out;
  Rng rng(seed);
  std::vector<double> stats;
  std::vector<size_t> idx(pairs.size());
  for (int r = 0; r < resamples; ++r) {
    for (auto& i : idx) i = rng.below(pairs.size());
    stats.push_back(accuracy_of(pairs, idx));
  }
  std::sort(stats.begin(), stats.end());
  out.lo = stats[static_cast<size_t>(0.025 * (resamples - 1))];
  out.hi = stats[static_cast<size_t>(0.975 * (resamples - 1))];
  return out;
}

double length_baseline_accuracy(const std::vector<PairRecord>& pairs) {
  long n = 0, c = 0;
  for (const auto& p : pairs) {
    if (!pair_decided(p)) continue;
    ++n;
    c += p.label > 0.5 ? p.len_chosen > p.len_rejected : p.len_chosen < p.len_rejected;
  }
  return n ? static_cast<double>(c) / n : 0.0;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2) return 0.0;
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx), syy += (y[i] - my) * (y[i] - my);
  return (sxx > 0 && syy > 0) ? sxy / std::sqrt(sxx * syy) : 0.0;
}

static std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * (i + j) + 1;
    i = j + 1;
  }
  return r;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) { return pearson(ranks(x), ranks(y)); }

Calibration calibration(const std::vector<PairRecord>& pairs, int bins) {
  Calibration c;
  c.bin_confidence.assign(bins, 0.0), c.bin_label.assign(bins, 0.0), c.bin_count.assign(bins, 0.0);
  if (pairs.empty()) return c;
  for (const auto& p : pairs) {
    const double prob = 1.0 / (1.0 + std::exp(-(p.r_chosen - p.r_rejected)));
    c.brier += (prob - p.label) * (prob - p.label);
    const int b = std::min(bins - 1, static_cast<int>(prob * bins));
    c.bin_confidence[b] += prob, c.bin_label[b] += p.label, c.bin_count[b] += 1;
  }
  c.brier /= pairs.size();
  for (int b = 0; b < bins; ++b) {
    if (c.bin_count[b] == 0) continue;
    c.bin_confidence[b] /= c.bin_count[b];
    c.bin_label[b] /= c.bin_count[b];
    c.ece += c.bin_count[b] / pairs.size() * std::fabs(c.bin_confidence[b] - c.bin_label[b]);
  }
  return c;
}

nlohmann::json diagnostics_json(const std::vector<PairRecord>& pairs, double bt_loss) {
  nlohmann::json j;
  Interval acc = accuracy_with_ci(pairs);
  long decided = 0;
  for (const auto& p : pairs) decided += pair_decided(p);
  j["pairs"] = pairs.size();
  j["decided_pairs"] = decided;
  j["accuracy"] = acc.value;
  j["accuracy_ci95"] = {acc.lo, acc.hi};
  j["bt_loss"] = bt_loss;
  j["length_baseline_accuracy"] = length_baseline_accuracy(pairs);

  std::vector<double> r, len;
  for (const auto& p : pairs) {
    r.push_back(p.r_chosen), len.push_back(static_cast<double>(p.len_chosen));
    r.push_back(p.r_rejected), len.push_back(static_cast<double>(p.len_rejected));
  }
  j["reward_length_pearson"] = pearson(r, len);
  j["reward_length_spearman"] = spearman(r, len);

  // Accuracy split by whether the preferred response is the longer one.
  std::vector<PairRecord> longer, shorter, equal, similar;
  for (const auto& p : pairs) {
    if (!pair_decided(p)) continue;
    const int64_t lp = p.label > 0.5 ? p.len_chosen : p.len_rejected, lo = p.label > 0.5 ? p.len_rejected : p.len_chosen;
    (lp > lo ? longer : lp < lo ? shorter : equal).push_back(p);
    const double ratio = static_cast<double>(std::max(lp, lo)) / std::max<int64_t>(1, std::min(lp, lo));
    if (ratio <= 1.2) similar.push_back(p);
  }
  auto acc_of = [](const std::vector<PairRecord>& v) {
    return nlohmann::json{{"pairs", v.size()}, {"accuracy", accuracy_with_ci(v, 0).value}};
  };
  j["by_length"] = {{"preferred_longer", acc_of(longer)}, {"preferred_shorter", acc_of(shorter)},
                    {"equal_length", acc_of(equal)},
                    {"similar_length", acc_of(similar)}};
  j["by_length"]["similar_length"]["definition"] = "longer/shorter response length ratio ≤ 1.2";

  Calibration cal = calibration(pairs);
  j["calibration"] = {{"ece", cal.ece}, {"brier", cal.brier}, {"bins", 10}};

  std::map<std::string, std::vector<PairRecord>> by_principle;
  for (const auto& p : pairs)
    if (!p.principle.empty()) by_principle[p.principle].push_back(p);
  if (!by_principle.empty()) {
    nlohmann::json pj = nlohmann::json::object();
    for (auto& [name, v] : by_principle) pj[name] = acc_of(v);
    j["by_principle"] = pj;
  }
  return j;
}

}  // namespace cairn
