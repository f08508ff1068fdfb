// metrics.jsonl writer, see metrics.h.
#include "train/metrics.h"

#include <filesystem>
#include <stdexcept>

#include "cairn/data.h"
#include "cairn/io.h"

namespace cairn {

MetricsLog::MetricsLog(const std::string& path, long keep_up_to_step) {
  std::string kept;
  if (keep_up_to_step >= 0 && std::filesystem::exists(path)) {
    LineReader in(path);
    std::string line;
    while (in.next(line)) {
      try {
        auto j = nlohmann::json::parse(line);
        if (j.value("step", 0L) <= keep_up_to_step) kept += line + "\n";
      } catch (const nlohmann::json::exception&) {
        break;  // a torn last line from a killed run ends the usable log
      }
    }
  }
  write_file_atomic(path, kept);
  f_ = std::fopen(path.c_str(), "ab");
  if (!f_) throw std::runtime_error("cannot append to " + path);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const nlohmann::json& record) {
  const std::string s = record.dump() + "\n";
  std::fwrite(s.data(), 1, s.size(), f_);
  std::fflush(f_);
}

}  // namespace cairn
