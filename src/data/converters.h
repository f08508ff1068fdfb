// Converters from upstream formats to cairn preference pairs (`cairn pairs --from ...`).
// Each reads a JSONL file and returns the pair records (JSON objects in the explicit-prompt shape of docs/formats.md#pairs,
// shape) plus counts for its summary line. Bad lines throw DataError with file:line.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cairn {

struct ConvertResult {
  std::vector<nlohmann::ordered_json> pairs;
  std::map<std::string, long> counts;  // records read, pairs written, dropped by reason, ...
  std::string summary;                 // one human line
};

// AlpacaEval annotations: one pair per unique (instruction, output_1, output_2); label = mean
// annotator probability for the favoured output; NaN/null/empty/out-of-range preferences and empty
// outputs dropped and counted; exact ties (mean 0.5) dropped and counted.
ConvertResult convert_alpaca_eval(const std::string& path);

// SL-CAI critique→revise logs: revised_k ≻ revised_(k−1) (revised_0 = initial) tagged with cycle k's
// principle, and final ≻ initial; identical texts and duplicate pairs skipped and counted.
ConvertResult convert_cai(const std::string& path);

// Position-swapped AI judgments → one pair per record with label = the winner's vote share (tie = ½
// to each). disagreement: what to do when the verdicts of the two orders disagree —
// "soft" (keep, label = vote share, possibly ½), "keep" (keep the majority with label 1; no majority →
// dropped) or "drop".
ConvertResult convert_judgments(const std::string& path, const std::string& disagreement);

// JSON with Python's non-standard NaN / Infinity / -Infinity tokens (outside strings) read as null.
nlohmann::json parse_json_line_lenient(const std::string& line, const std::string& file, long line_no);

}  // namespace cairn
