// Validation sampling spread over prompts, see include/cairn/data.h.
#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "cairn/data.h"
#include "util/rng.h"

namespace cairn {

std::vector<Pair> sample_over_prompts(std::vector<Pair> pairs, size_t n, size_t* n_prompts) {
  std::vector<std::vector<size_t>> groups;  // pair indices of each prompt, in file order
  std::vector<size_t> prompt_of(pairs.size());
  std::unordered_map<std::string_view, size_t> group_of;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string& a = pairs[i].chosen;
    const std::string& b = pairs[i].rejected;
    const size_t common = std::mismatch(a.begin(), a.begin() + std::min(a.size(), b.size()), b.begin()).first - a.begin();
    auto [it, fresh] = group_of.emplace(std::string_view(a.data(), common), groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(i);
    prompt_of[i] = it->second;
  }
  std::vector<size_t> take;
  if (n == 0 || n >= pairs.size()) {
    take.resize(pairs.size());
    for (size_t i = 0; i < take.size(); ++i) take[i] = i;
  } else {
    Rng rng(0x5a17ed);  // fixed: the same file gives the same sample in every run
    for (size_t i = groups.size(); i > 1; --i) std::swap(groups[i - 1], groups[rng.below(i)]);
    for (size_t round = 0; take.size() < n; ++round)
      for (const auto& g : groups)
        if (round < g.size() && take.size() < n) take.push_back(g[round]);
    std::sort(take.begin(), take.end());
  }
  if (n_prompts) {
    std::vector<char> seen(groups.size(), 0);
    *n_prompts = 0;
    for (size_t i : take) *n_prompts += !seen[prompt_of[i]]++;
  }
  std::vector<Pair> out;
  out.reserve(take.size());
  for (size_t i : take) out.push_back(std::move(pairs[i]));
  return out;
}

}  // namespace cairn
