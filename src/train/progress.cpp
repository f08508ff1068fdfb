// Progress line, see progress.h.
#include "train/progress.h"

#include <cstdio>

#include <unistd.h>

#include "util/timing.h"

namespace cairn {

Progress::Progress(std::string what, long total, int plain_every)
    : what_(std::move(what)), total_(total), plain_every_(plain_every), tty_(isatty(fileno(stderr))), t0_(now_seconds()) {}

std::string Progress::eta_string(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void Progress::update(long done, const std::string& fields, bool force) {
  const double t = now_seconds();
  if (first_done_ < 0) first_done_ = done, first_t_ = t;
  ++updates_;
  const bool due = tty_ ? (t - last_print_ >= 0.2) : (updates_ % plain_every_ == 0);
  if (!due && !force) return;
  last_print_ = t;
  std::string eta = "?";
  if (total_ > 0 && done > first_done_) eta = eta_string((t - first_t_) / (done - first_done_) * (total_ - done));
  char head[128];
  if (total_ > 0) std::snprintf(head, sizeof head, "%s %ld/%ld", what_.c_str(), done, total_);
  else std::snprintf(head, sizeof head, "%s %ld", what_.c_str(), done);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s  %s  ETA %s", head, fields.c_str(), eta.c_str());
    pending_newline_ = true;
  } else {
    std::fprintf(stderr, "%s  %s  ETA %s  (%.0fs)\n", head, fields.c_str(), eta.c_str(), t - t0_);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (pending_newline_) std::fputc('\n', stderr);
  pending_newline_ = false;
}

}  // namespace cairn
