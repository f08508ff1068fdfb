// Scoring records and reward numbers, see scoring.h.
#include "cli/scoring.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "cairn/data.h"
#include "cairn/reward.h"

namespace cairn::cli {

nlohmann::ordered_json reward_number(double x) {
  char b[32];
  const auto r = std::to_chars(b, b + sizeof b, static_cast<float>(x));
  return std::strtod(std::string(b, r.ptr).c_str(), nullptr);
}

RecordScorer::RecordScorer(const ModelConfig& cfg, const Tokenizer& tok)
    : cfg_(cfg), tok_(tok), weights_(head_weights(cfg, HeadUse::Scoring)),
      chat_(ChatTemplate::by_name(cfg.chat_template, cfg.chat_system)) {}

std::string RecordScorer::render(const nlohmann::json& rec, const std::string& file, long line) const {
  return render_score_record(rec, file, line, chat_).text;
}

std::vector<int32_t> RecordScorer::tokenize(const std::string& text, bool* truncated) const {
  return tok_.encode_for_model(text, cfg_.max_seq_len, truncated);
}

double RecordScorer::composite(const float* r) const {
  return side_reward(r, 0, -1, cfg_.n_heads_out, weights_.data());
}

nlohmann::ordered_json RecordScorer::per_head(const float* r) const {
  nlohmann::ordered_json o = nlohmann::ordered_json::object();
  if (cfg_.n_heads_out > 1)
    for (int h = 0; h < cfg_.n_heads_out; ++h) o[cfg_.head_names[h]] = reward_number(r[h]);
  return o;
}

const char* RecordScorer::non_finite(const float* r) const {
  auto name = [](double x) { return std::isnan(x) ? "NaN" : x > 0 ? "inf" : "-inf"; };
  for (int h = 0; h < cfg_.n_heads_out; ++h)
    if (!std::isfinite(r[h])) return name(r[h]);
  const double c = composite(r);
  return std::fabs(c) <= FLT_MAX ? nullptr : name(c);
}

}  // namespace cairn::cli
