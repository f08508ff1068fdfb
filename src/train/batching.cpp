// Batch building and epoch ordering, see batching.h.
#include "train/batching.h"

#include <algorithm>
#include <numeric>

#include "util/rng.h"

namespace cairn {

void pair_targets(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& idx, size_t b, size_t e,
                  std::vector<PairTarget>* targets, std::vector<float>* lengths) {
  targets->clear();
  if (lengths) lengths->clear();
  for (size_t k = b; k < e; ++k) {
    const TokenizedPair& p = pairs[idx[k]];
    const int32_t i = static_cast<int32_t>(k - b);
    if (lengths) lengths->push_back(static_cast<float>(p.chosen_chars)), lengths->push_back(static_cast<float>(p.rejected_chars));
    PairTarget t;
    t.chosen = 2 * i, t.rejected = 2 * i + 1;
    t.label = p.label, t.margin = p.margin, t.weight = p.weight, t.head = p.head;
    targets->push_back(t);
  }
}

void build_batch(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& idx, size_t b, size_t e,
                 bool share, TokenBatch* batch, std::vector<PairTarget>* targets, std::vector<float>* lengths) {
  batch->clear();
  for (size_t k = b; k < e; ++k) batch->add_shared({&pairs[idx[k]].chosen, &pairs[idx[k]].rejected}, share);
  pair_targets(pairs, idx, b, e, targets, lengths);
}

SharingStats sharing_stats(const std::vector<TokenizedPair>& pairs) {
  SharingStats st;
  for (const TokenizedPair& p : pairs) {
    const long s = TokenBatch::shared_prefix({&p.chosen, &p.rejected});
    st.sequence_tokens += static_cast<long>(p.chosen.size() + p.rejected.size());
    st.shared_tokens += s, st.pairs_sharing += s > 0;
  }
  return st;
}

std::vector<size_t> epoch_order(size_t n, const std::vector<TokenizedPair>& pairs, uint64_t seed, int epoch,
                                int batch_pairs, int bucket_window) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);  // Fisher–Yates
  if (bucket_window <= 1 || batch_pairs <= 1) return order;
  auto len = [&](size_t i) { return std::max(pairs[i].chosen.size(), pairs[i].rejected.size()); };
  const size_t window = static_cast<size_t>(bucket_window) * batch_pairs;
  std::vector<size_t> out;
  out.reserve(n);
  for (size_t w = 0; w < n; w += window) {
    const size_t e = std::min(n, w + window);
    std::stable_sort(order.begin() + w, order.begin() + e, [&](size_t a, size_t b) { return len(a) < len(b); });
    // Shuffle the batches of this window so lengths do not rise through the epoch.
    std::vector<size_t> starts;
    for (size_t s = w; s < e; s += batch_pairs) starts.push_back(s);
    for (size_t i = starts.size(); i > 1; --i) std::swap(starts[i - 1], starts[rng.below(i)]);
    for (size_t s : starts)
      for (size_t k = s; k < std::min(e, s + batch_pairs); ++k) out.push_back(order[k]);
  }
  return out;
}

}  // namespace cairn
