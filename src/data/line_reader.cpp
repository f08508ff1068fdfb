// LineReader: plain files are read as they are; a file that starts with the gzip magic is inflated
// by zlib's inflate(), member after member (a concatenation of gzip files is one gzip file). Not
// zlib's gz* API, which ignores whatever follows the last gzip member: a plain file appended to a
// gzip one (`cat a.jsonl.gz b.jsonl`) would lose its lines without a word. Here bytes after the last
// member are an error, unless they are all zero (block padding, as Python's gzip allows), and so is a
// stream that ends inside a member (a truncated file).
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
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

// The file's bytes, inflated when it is gzip. read() fills up to n bytes: 0 at the end, a
// "what is wrong" message (thrown by the caller with the line) on bad data.
struct LineReader::Source {
  int fd = -1;
  bool gzip = false, member = false, file_end = false;  // member: inside a gzip member
  z_stream z{};
  std::vector<unsigned char> in = std::vector<unsigned char>(1 << 18);
  uint64_t offset = 0;  // file bytes before in[0]

  ~Source() {
    if (gzip) inflateEnd(&z);
    if (fd >= 0) ::close(fd);
  }
  // Up to n bytes, what one read(2) gives (a pipe or FIFO gives what has arrived); 0 at the end.
  size_t read_some(void* dst, size_t n) const {
    for (;;) {
      const ssize_t got = ::read(fd, dst, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) throw std::string("read error: ") + std::strerror(errno);
    }
  }
  // At least k input bytes in z (fewer only at the end of the file). Throws the message on a read error.
  void want_input(size_t k) {
    while (z.avail_in < k && !file_end) {
      const size_t used = static_cast<size_t>(z.next_in - in.data());
      offset += used;
      std::memmove(in.data(), z.next_in, z.avail_in);
      const size_t got = read_some(in.data() + z.avail_in, in.size() - z.avail_in);
      if (got == 0) file_end = true;
      z.next_in = in.data();
      z.avail_in += static_cast<uInt>(got);
    }
  }
  uint64_t at() const { return offset + static_cast<uint64_t>(z.next_in - in.data()); }

  size_t read(char* dst, size_t n) {
    if (!gzip) return read_some(dst, n);
    for (;;) {
      want_input(member ? 1 : 2);
      if (!member) {  // after a member: zero padding, then another member or the end
        while (z.avail_in > 0 && z.next_in[0] == 0) {
          ++z.next_in, --z.avail_in;
          want_input(2);
        }
        if (z.avail_in == 0) return 0;
        if (z.avail_in < 2 || z.next_in[0] != 0x1f || z.next_in[1] != 0x8b)
          throw "corrupt gzip file: the bytes from offset " + std::to_string(at()) +
              " on are not gzip data (a plain file appended to a gzip file?)";
        if (inflateReset(&z) != Z_OK) throw std::string("corrupt or truncated gzip data: cannot restart inflate");
        member = true;
        continue;
      }
      z.next_out = reinterpret_cast<Bytef*>(dst);
      z.avail_out = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      const uInt out_before = z.avail_out, in_before = z.avail_in;
      const int r = inflate(&z, Z_NO_FLUSH);
      const size_t produced = out_before - z.avail_out;
      if (r == Z_STREAM_END) {
        member = false;
      } else if (r == Z_OK || r == Z_BUF_ERROR) {
        // No progress with room for output: inflate wants input, and there is none (want_input above
        // refills an empty buffer unless the file has ended).
        if (produced == 0 && z.avail_in == in_before)
          throw std::string("corrupt or truncated gzip data: unexpected end of file");
      } else {
        throw std::string("corrupt or truncated gzip data: ") + (z.msg ? z.msg : "inflate error " + std::to_string(r));
      }
      if (produced > 0) return produced;
    }
  }
};

LineReader::LineReader(const std::string& path, size_t max_line_bytes)
    : path_(path), buf_(1 << 20), max_line_(max_line_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError(path, 0, "is a directory, not a file");
  auto src = std::make_unique<Source>();
  src->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (src->fd < 0) throw DataError(path, 0, std::string("cannot open: ") + std::strerror(errno));
  src->z.next_in = src->in.data();
  try {
    src->want_input(2);
  } catch (const std::string& what) {
    throw DataError(path, 0, what);
  }
  if (src->z.avail_in >= 2 && src->in[0] == 0x1f && src->in[1] == 0x8b) {
    if (inflateInit2(&src->z, 16 + MAX_WBITS) != Z_OK) throw DataError(path, 0, "cannot start gzip decompression");
    src->gzip = true;
  } else {  // plain: the bytes peeked at go first
    std::memcpy(buf_.data(), src->in.data(), src->z.avail_in);
    end_ = src->z.avail_in;
  }
  src_ = std::move(src);
}

LineReader::~LineReader() = default;

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
  size_t n = 0;
  try {
    n = src_->read(buf_.data() + end_, buf_.size() - end_);
  } catch (const std::string& what) {
    throw DataError(path_, line_no_ + 1, what);
  }
  if (n == 0) {
    eof_ = true;
    return false;
  }
  end_ += n;
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
