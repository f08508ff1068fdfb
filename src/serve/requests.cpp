// Request and response bodies of the scoring endpoints, see requests.h.
#include "serve/requests.h"

#include <nlohmann/json.hpp>

#include "cairn/data.h"
#include "cairn/errors.h"

namespace cairn::serve {
namespace {

// The body as a JSON object, and its array field `field` (400 when malformed or missing, 413 when
// it holds more than the limit).
nlohmann::json body_array(const std::string& body, const char* field, const RequestLimits& lim, nlohmann::json* root) {
  try {
    *root = parse_json_line(body, "request body", 0);
  } catch (const DataError& e) {
    throw RequestError(400, e.what());
  }
  const auto it = root->find(field);
  if (it == root->end() || it->is_null()) throw RequestError(400, std::string("missing field \"") + field + "\"");
  if (!it->is_array()) throw RequestError(400, std::string("field \"") + field + "\" must be an array");
  if (static_cast<long>(it->size()) > lim.max_records)
    throw RequestError(413, std::string("field \"") + field + "\" holds " + std::to_string(it->size()) +
                                " entries, over the limit of " + std::to_string(lim.max_records) + " (--max-records)");
  return *it;
}

void add_record(ScoreInput& in, const nlohmann::json& rec, const std::string& where, const cli::RecordScorer& scorer,
                const RequestLimits& lim) {
  if (!rec.is_object()) throw RequestError(400, where + ": expected a JSON object");
  std::string text;
  try {
    text = scorer.render(rec, where, 0);
  } catch (const DataError& e) {
    throw RequestError(400, e.what());
  }
  if (text.size() > lim.max_record_bytes)
    throw RequestError(413, where + ": " + std::to_string(text.size()) + " bytes of text, over the limit of " +
                                std::to_string(lim.max_record_bytes) + " (--max-record-bytes)");
  bool cut = false;
  in.seqs.push_back(scorer.tokenize(text, &cut));
  in.truncated.push_back(cut);
}

// The rewards of record i as JSON numbers; 500 naming the record when the model overflowed on it.
const float* checked_row(const ScoreJob& job, size_t i, const char* field, const cli::RecordScorer& scorer) {
  if (!job.error.empty()) throw RequestError(500, job.error);
  const float* r = job.rewards.data() + i * static_cast<size_t>(scorer.config().n_heads_out);
  if (const char* bad = scorer.non_finite(r))
    throw RequestError(500, std::string(field) + "[" + std::to_string(i) + "]: the reward is not finite (" + bad +
                                "): the model overflows on this record");
  return r;
}

}  // namespace

ScoreInput parse_score_request(const std::string& body, const cli::RecordScorer& scorer, const RequestLimits& lim) {
  nlohmann::json root;
  const nlohmann::json records = body_array(body, "records", lim, &root);
  ScoreInput in;
  for (size_t i = 0; i < records.size(); ++i)
    add_record(in, records[i], "records[" + std::to_string(i) + "]", scorer, lim);
  return in;
}

ScoreInput parse_get_reward_request(const std::string& body, const cli::RecordScorer& scorer, const RequestLimits& lim) {
  nlohmann::json root;
  const nlohmann::json queries = body_array(body, "query", lim, &root);
  ScoreInput in;
  for (size_t i = 0; i < queries.size(); ++i) {
    const std::string where = "query[" + std::to_string(i) + "]";
    if (!queries[i].is_string()) throw RequestError(400, where + ": must be a string");
    add_record(in, nlohmann::json{{"text", queries[i]}}, where, scorer, lim);
  }
  return in;
}

std::string score_response(const ScoreJob& job, const std::vector<bool>& truncated, const cli::RecordScorer& scorer) {
  const ModelConfig& cfg = scorer.config();
  nlohmann::ordered_json rewards = nlohmann::ordered_json::array(), heads = nlohmann::ordered_json::object();
  if (cfg.n_heads_out > 1)
    for (const auto& name : cfg.head_names) heads[name] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < job.seqs.size(); ++i) {
    const float* r = checked_row(job, i, "records", scorer);
    rewards.push_back(cli::reward_number(scorer.composite(r)));
    if (cfg.n_heads_out > 1)
      for (int h = 0; h < cfg.n_heads_out; ++h) heads[cfg.head_names[h]].push_back(cli::reward_number(r[h]));
  }
  nlohmann::ordered_json out;
  out["rewards"] = std::move(rewards);
  out["heads"] = std::move(heads);
  out["truncated"] = truncated;
  return out.dump();
}

std::string get_reward_response(const ScoreJob& job, const cli::RecordScorer& scorer) {
  nlohmann::ordered_json rewards = nlohmann::ordered_json::array();
  for (size_t i = 0; i < job.seqs.size(); ++i)
    rewards.push_back(cli::reward_number(scorer.composite(checked_row(job, i, "query", scorer))));
  return nlohmann::ordered_json{{"rewards", std::move(rewards)}}.dump();
}

}  // namespace cairn::serve
