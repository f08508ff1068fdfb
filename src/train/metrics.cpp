// metrics.jsonl writer, see metrics.h.
#include "train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "cairn/data.h"
#include "cairn/io.h"

namespace cairn {

MetricsLog::MetricsLog(const std::string& path, long keep_up_to_step) : path_(path) {
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
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("cannot append to " + path + ": " + std::strerror(errno));
  const off_t end = ::lseek(fd_, 0, SEEK_END);
  good_size_ = end > 0 ? end : 0;
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::write(const nlohmann::json& record) {
  const std::string s = record.dump() + "\n";
  for (size_t done = 0; done < s.size();) {
    const ssize_t n = ::write(fd_, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      if (::ftruncate(fd_, good_size_) != 0) {
        // cutting the partial line off failed too (a device): a resumed run stops reading at it
      }
      throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  good_size_ += static_cast<off_t>(s.size());
}

}  // namespace cairn
