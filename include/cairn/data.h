// Preference data: streaming JSONL (plain or gzip), the pair shapes of docs/formats.md#pairs and their rendering to
// text, and scoring records. Every data error is a DataError naming file and line.
//
// Rendering (docs/formats.md#rendering):
//   messages  → concatenation of "\n\nHuman: " + content (role user), "\n\nAssistant: " + content
//               (role assistant), "\n\nSystem: " + content (role system);
//   explicit text prompt → used raw when it starts with "\n\nHuman:" (text = prompt + response),
//               else text = "\n\nHuman: " + prompt + "\n\nAssistant: " + response;
//   implicit prompt (only "chosen"/"rejected" strings) → used as given.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/chat_template.h"

namespace cairn {

// Streams the lines of a file, plain or gzip (detected by content), in constant memory. A UTF-8
// byte-order mark at the start of the file is dropped. Throws DataError on a directory, a read
// error, a corrupt or truncated gzip stream, bytes after the last gzip member that are not zero
// padding, and on lines over max_line_bytes.
class LineReader {
 public:
  explicit LineReader(const std::string& path, size_t max_line_bytes = size_t(64) << 20);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // Next line without its '\n' (and '\r'); false at end of file. line_number() is 1-based.
  bool next(std::string& line);
  long line_number() const { return line_no_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();
  void took_line(std::string& line);
  std::string path_;
  struct Source;  // the file's bytes, inflated when gzip
  std::unique_ptr<Source> src_;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  size_t max_line_;
  long line_no_ = 0;
  bool eof_ = false;
};

struct Pair {
  std::string id;
  std::string chosen, rejected;        // rendered full texts (prompt + response)
  int64_t chosen_chars = 0, rejected_chars = 0;  // length of the response part (Unicode code points)
  float label = 1.0f, margin = 0.0f, weight = 1.0f;
  std::string principle;
  long line = 0;
  bool empty_response = false;  // a side's response is empty or only whitespace
};

struct ReadStats {
  long lines = 0, pairs = 0, skipped = 0, blank = 0;
  long empty_responses = 0;  // pairs with an empty response on one side or both
};

// Parses one pair record (docs/formats.md#pairs). file/line name the place for errors.
// tmpl: how conversations become text (include/cairn/chat_template.h; default: plain).
Pair parse_pair(const nlohmann::json& j, const std::string& file, long line, const ChatTemplate& tmpl = {});
// Reads every pair of a file. skip_bad: malformed lines are counted (first 5 reported on stderr)
// instead of throwing.
std::vector<Pair> read_pairs(const std::string& path, bool skip_bad, ReadStats* stats, const ChatTemplate& tmpl = {});
// Parses a JSONL line into an object, with file:line errors (invalid JSON or UTF-8, not an object).
nlohmann::json parse_json_line(const std::string& line, const std::string& file, long line_no);

// A fixed sample of at most n pairs spread over prompts (validation subsets, train --valid-max-pairs).
// A pair's prompt is the common prefix of its two rendered texts. Prompts are visited in a fixed
// pseudo-random order, one pair of each in turn, until n are taken; the sample keeps file order.
// n = 0 or n ≥ pairs.size(): all pairs. *n_prompts (optional): distinct prompts in the sample.
std::vector<Pair> sample_over_prompts(std::vector<Pair> pairs, size_t n, size_t* n_prompts = nullptr);

// Rendering helpers.
std::string render_messages(const nlohmann::json& messages, const std::string& file, long line, const char* field);
std::string render_prompt_response(const std::string& prompt, const std::string& response);

// A scoring record: {"prompt","response"} (text or messages) or {"text"}.
struct ScoreText {
  std::string text;
  int64_t response_chars = 0;
};
ScoreText render_score_record(const nlohmann::json& j, const std::string& file, long line,
                              const ChatTemplate& tmpl = {});

// Number of Unicode code points of valid UTF-8 text.
int64_t utf8_length(std::string_view s);

}  // namespace cairn
