// The learnable toy corpus of the end-to-end tests (tests/test_cli.cpp, tests/test_distributed.cpp).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "util/rng.h"

namespace cairn {

// A learnable toy corpus: the chosen answer is polite ("please"/"thank you"), the rejected one is not.
inline std::string toy_pairs(int n, uint64_t seed) {
  const char* topics[] = {"the weather", "a recipe", "my homework", "the train times", "a poem", "the news"};
  const char* good[] = {"Thank you for asking, here is a careful answer about", "Please find below a kind explanation of"};
  const char* bad[] = {"Whatever, figure out", "No. Go away and read about"};
  Rng r(seed);
  std::string s;
  for (int i = 0; i < n; ++i) {
    const std::string t = topics[r.below(6)];
    nlohmann::json j = {{"prompt", "Tell me about " + t + " " + std::to_string(i)},
                        {"chosen", std::string(good[r.below(2)]) + " " + t + "."},
                        {"rejected", std::string(bad[r.below(2)]) + " " + t + "."}};
    s += j.dump() + "\n";
  }
  return s;
}

}  // namespace cairn
