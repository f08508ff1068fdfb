// LineReader: zlib's gz* API reads gzip and plain files alike (it detects the gzip magic), so one
// code path streams both. Truncation shows up as a gzread error or as gzip's "unexpected end of file".
#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "cairn/data.h"
#include "cairn/errors.h"

namespace cairn {
namespace {

// "line longer than 64 MiB" (the documented message at the default limit), or the limit in bytes.
std::string too_long(size_t max_line) {
  return "line longer than " +
         (max_line % (size_t(1) << 20) == 0 ? std::to_string(max_line >> 20) + " MiB" : std::to_string(max_line) + " bytes");
}

}  // namespace

LineReader::LineReader(const std::string& path, size_t max_line_bytes)
    : path_(path), buf_(1 << 20), max_line_(max_line_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError(path, 0, "is a directory, not a file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError(path, 0, std::string("cannot open: ") + std::strerror(errno));
  gzbuffer(f, 1 << 17);
  gz_ = f;
}

LineReader::~LineReader() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

bool LineReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  if (end_ == buf_.size()) {
    if (buf_.size() >= max_line_ + 1)
      throw DataError(path_, line_no_ + 1, too_long(max_line_));
    buf_.resize(std::min(buf_.size() * 2, max_line_ + 1));
  }
  gzFile f = static_cast<gzFile>(gz_);
  const int n = gzread(f, buf_.data() + end_, static_cast<unsigned>(buf_.size() - end_));
  if (n <= 0) {
    int err = 0;
    const char* msg = gzerror(f, &err);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END))
      throw DataError(path_, line_no_ + 1,
                      std::string(err == Z_ERRNO ? "read error: " : "corrupt or truncated gzip data: ") + msg);
    eof_ = true;
    return false;
  }
  end_ += static_cast<size_t>(n);
  return true;
}

// Counts the line; a UTF-8 byte-order mark that starts it is not part of it: the file's, or that
// of a file joined on with cat (JSON text never starts with one, and score must not copy it).
void LineReader::took_line(std::string& line) {
  ++line_no_;
  if (line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
}

bool LineReader::next(std::string& line) {
  for (;;) {
    const char* start = buf_.data() + pos_;
    const void* nl = std::memchr(start, '\n', end_ - pos_);
    if (nl) {
      size_t len = static_cast<const char*>(nl) - start;
      if (len > max_line_) throw DataError(path_, line_no_ + 1, too_long(max_line_));
      line.assign(start, len && start[len - 1] == '\r' ? len - 1 : len);
      pos_ += len + 1;
      took_line(line);
      return true;
    }
    if (!fill()) {
      if (end_ > pos_) {  // last line without a newline
        if (end_ - pos_ > max_line_) throw DataError(path_, line_no_ + 1, too_long(max_line_));
        line.assign(buf_.data() + pos_, end_ - pos_);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        pos_ = end_;
        took_line(line);
        return true;
      }
      return false;
    }
  }
}

}  // namespace cairn
