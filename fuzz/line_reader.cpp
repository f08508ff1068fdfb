// LineReader (src/data/line_reader.cpp) on arbitrary file bytes: plain text, or gzip (detected by
// content, so the fuzzer reaches zlib's paths too). Invariants: no line holds '\n' or exceeds the
// limit; for a plain file the lines are exactly its '\n'-separated pieces (one '\r' before each
// '\n' dropped, a last line without '\n' kept, a UTF-8 byte-order mark at the start dropped).
#include "cairn/data.h"
#include "fuzz.h"

using namespace cairn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir dir("line_reader");
  const std::string path = dir.write("input.jsonl", fuzz::as_view(data, size));
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  constexpr size_t kMaxLine = 300;  // small, so long lines are reached
  std::vector<std::string> lines;
  const bool ok = fuzz::expect_data_error([&] {
    LineReader in(path, kMaxLine);
    std::string line;
    while (in.next(line)) {
      fuzz::check(line.find('\n') == std::string::npos, "a line holds '\\n'");
      fuzz::check(line.size() <= kMaxLine, "a line of " + std::to_string(line.size()) + " bytes passed the limit");
      fuzz::check(in.line_number() == static_cast<long>(lines.size()) + 1, "line numbers are not 1, 2, ...");
      lines.push_back(line);
    }
    fuzz::check(!in.next(line), "next() after the end returned a line");
  });
  if (gzip) return 0;
  // Plain text: the expected lines, and whether one of them is over the limit (then DataError).
  std::vector<std::string> want;
  bool too_long = false;
  for (std::string_view l : fuzz::split_lines(fuzz::as_view(data, size))) {
    too_long = too_long || l.size() > kMaxLine;  // a '\r' before the '\n' counts (it is in the file's line)
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.substr(0, 3) == "\xEF\xBB\xBF") l.remove_prefix(3);  // a UTF-8 BOM starting a line is dropped
    want.emplace_back(l);
  }
  fuzz::check(ok == !too_long, ok ? "a line over the limit was not refused" : "a file within the limit was refused");
  if (ok) fuzz::check(lines == want, "the lines differ from the file's '\\n'-separated pieces");
  return 0;
}
