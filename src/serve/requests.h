// The bodies of `cairn serve`'s scoring endpoints: request JSON → model input, results → response
// JSON. Records are read, rendered and tokenized by the same code as `cairn score` (cli/scoring.h).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/scoring.h"
#include "serve/batcher.h"

namespace cairn::serve {

// A request the server refuses: the HTTP status (400, 413, 500) and a message in plain words.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& msg) : std::runtime_error(msg), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct RequestLimits {
  long max_records = 256;               // records (or queries) per request
  size_t max_record_bytes = 1u << 20;  // rendered text of one record
};

// The records of one request, tokenized, in request order.
struct ScoreInput {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<bool> truncated;
};

// POST /v1/score: {"records": [{"prompt", "response"} | {"text"}, ...]} (docs/formats.md#scoring-records).
ScoreInput parse_score_request(const std::string& body, const cli::RecordScorer& scorer, const RequestLimits& lim);
// POST /get_reward (OpenRLHF): {"query": [full text, ...]}; each query is scored as {"text": query}.
ScoreInput parse_get_reward_request(const std::string& body, const cli::RecordScorer& scorer, const RequestLimits& lim);

// {"rewards": [...], "heads": {head: [...]}, "truncated": [...]} (heads: multi-head models only).
std::string score_response(const ScoreJob& job, const std::vector<bool>& truncated, const cli::RecordScorer& scorer);
// {"rewards": [...]}
std::string get_reward_response(const ScoreJob& job, const cli::RecordScorer& scorer);

}  // namespace cairn::serve
