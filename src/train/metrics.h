// metrics.jsonl: one JSON object per logged step, appended line by line (one write(2) each, checked:
// a failed write throws std::runtime_error naming the file, after cutting a partial line off). On resume the
// file is first cut back to the lines whose step is ≤ the checkpoint's step (the rest belong to work
// that the checkpoint does not contain), then rewritten atomically before appending resumes.
#pragma once
#include <sys/types.h>

#include <string>

#include <nlohmann/json.hpp>

namespace cairn {

class MetricsLog {
 public:
  // keep_up_to_step < 0: start a fresh file.
  MetricsLog(const std::string& path, long keep_up_to_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  int fd_ = -1;
  off_t good_size_ = 0;  // bytes of whole lines: what a failed write cuts the file back to
};

}  // namespace cairn
