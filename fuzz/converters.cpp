// The `cairn pairs` converters (src/data/converters.cpp) on an arbitrary input file: alpaca-eval,
// cai and judgments (soft, keep or drop), and the lenient NaN/Infinity line parser. Invariant:
// every pair a converter writes is one that `cairn train` reads back (parse_pair of its JSON line).
#include "cairn/data.h"
#include "data/converters.h"
#include "fuzz.h"

using namespace cairn;

namespace {

void check_pairs(const ConvertResult& r, const char* from) {
  fuzz::check(r.counts.at("pairs") == static_cast<long>(r.pairs.size()), std::string(from) + ": pairs counter");
  for (size_t i = 0; i < r.pairs.size(); ++i) {
    const std::string line = r.pairs[i].dump();  // what cmd_pairs writes
    try {
      parse_pair(parse_json_line(line, "output.jsonl", static_cast<long>(i) + 1), "output.jsonl", static_cast<long>(i) + 1);
    } catch (const DataError& e) {
      fuzz::finding(std::string(from) + " wrote a pair that cairn cannot read: " + e.what());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir dir("converters");
  const std::string path = dir.write("input.jsonl", fuzz::as_view(data, size));
  fuzz::expect_data_error([&] { check_pairs(convert_alpaca_eval(path), "alpaca-eval"); });
  fuzz::expect_data_error([&] { check_pairs(convert_cai(path), "cai"); });
  // One --disagreement mode per input (each reads the file again; a 1 MiB LineReader buffer is most of
  // the cost), picked by size so that mutations reach all three.
  static const char* const kModes[] = {"soft", "keep", "drop"};
  fuzz::expect_data_error([&] { check_pairs(convert_judgments(path, kModes[size % 3]), "judgments"); });
  long line_no = 0;
  for (std::string_view piece : fuzz::split_lines(fuzz::as_view(data, size))) {
    const std::string line(piece);
    ++line_no;
    fuzz::expect_data_error([&] { parse_json_line_lenient(line, "input.jsonl", line_no); });
  }
  return 0;
}
