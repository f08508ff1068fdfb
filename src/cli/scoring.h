// What `cairn score` and `cairn serve` share: a scoring record (docs/formats.md#scoring-records) →
// rendered text → model input, and the rewards of one forward row as JSON numbers. One definition,
// so the service returns exactly the numbers the offline command writes.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/chat_template.h"
#include "cairn/config.h"
#include "cairn/tokenizer.h"

namespace cairn::cli {

// A reward as a JSON number: the shortest decimal that reads back as the same float32 (std::to_chars),
// parsed into the double that nlohmann::json prints back as that same decimal.
nlohmann::ordered_json reward_number(double x);

class RecordScorer {
 public:
  RecordScorer(const ModelConfig& cfg, const Tokenizer& tok);
  const ModelConfig& config() const { return cfg_; }

  // The rendered text of a parsed record (DataError "file:line: what is wrong").
  std::string render(const nlohmann::json& rec, const std::string& file, long line) const;
  // [BOS] ids [EOS], left-truncated to max_seq_len (*truncated says whether it was cut).
  std::vector<int32_t> tokenize(const std::string& text, bool* truncated) const;

  // One forward row r (n_heads_out values): the scoring composite, and the per-head object
  // {head: value} (multi-head models only; empty otherwise).
  double composite(const float* r) const;
  nlohmann::ordered_json per_head(const float* r) const;
  // The first non-finite value among the head outputs and the composite ("NaN", "inf", "-inf"), or
  // null when all are finite (weights are checked at load, so this is the forward pass overflowing).
  const char* non_finite(const float* r) const;

 private:
  const ModelConfig& cfg_;
  const Tokenizer& tok_;
  std::vector<float> weights_;
  ChatTemplate chat_;
};

}  // namespace cairn::cli
