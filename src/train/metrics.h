// metrics.jsonl: one JSON object per logged step, appended and flushed line by line. On resume the
// file is first cut back to the lines whose step is ≤ the checkpoint's step (the rest belong to work
// that the checkpoint does not contain), then rewritten atomically before appending resumes.
#pragma once
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace cairn {

class MetricsLog {
 public:
  // keep_up_to_step < 0: start a fresh file.
  MetricsLog(const std::string& path, long keep_up_to_step);
  ~MetricsLog();
  void write(const nlohmann::json& record);

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace cairn
