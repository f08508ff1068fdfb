// Atomic file writing, see include/cairn/io.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <stdexcept>

#include "cairn/errors.h"
#include "cairn/io.h"

namespace fs = std::filesystem;

namespace cairn {
namespace {

std::runtime_error io_error(const std::string& what, const std::string& path) {
  return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

// <target>.tmp.<pid>.<counter>; remove_stale_temp_files recognises exactly this pattern.
std::string temp_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};  // unique per writer, also across threads
  return path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
}

// The temp files being written now, for a signal handler that exits at once
// (remove_inflight_temp_files): fixed slots, so the handler reads no heap memory. A writer copies
// its temp name into a free slot and sets `ready` before the file is created, and clears it once
// the file is renamed or removed. A name too long for a slot, or a writer finding every slot
// taken, is not published (its temp file is then left to remove_stale_temp_files).
struct InflightSlot {
  std::atomic<bool> taken{false}, ready{false};
  char path[4096];
};
InflightSlot g_inflight[16];
static_assert(std::atomic<bool>::is_always_lock_free);

int publish_inflight(const std::string& tmp) {
  if (tmp.size() >= sizeof g_inflight[0].path) return -1;
  for (int i = 0; i < static_cast<int>(std::size(g_inflight)); ++i) {
    bool free = false;
    if (!g_inflight[i].taken.compare_exchange_strong(free, true)) continue;
    std::memcpy(g_inflight[i].path, tmp.c_str(), tmp.size() + 1);
    g_inflight[i].ready.store(true);
    return i;
  }
  return -1;
}

void retire_inflight(int& slot) {
  if (slot < 0) return;
  g_inflight[slot].ready.store(false);
  g_inflight[slot].taken.store(false);
  slot = -1;
}

// 1 to 9 decimal digits (a pid or a counter).
bool decimal(const std::string& s) {
  return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// The writer's pid when `file` is a temp name of `target` (<target>.tmp.<pid>.<counter>), else −1.
long temp_file_pid(const std::string& file, const std::string& target) {
  const std::string prefix = target + ".tmp.";
  if (file.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string rest = file.substr(prefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string::npos || !decimal(rest.substr(0, dot)) || !decimal(rest.substr(dot + 1))) return -1;
  return std::stol(rest.substr(0, dot));
}

// True when process `pid` no longer exists: its temp files are stale. A live process (this one, or
// any other, even one we may not signal) keeps them.
bool writer_gone(long pid) {
  return pid > 0 && pid != getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

void fsync_dir(const std::string& path) {
  std::string dir = fs::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Flushes and closes f; a temp file (tmp non-empty) is fsync'd and renamed onto path. On failure the
// temp file is removed and path is left as it was. Errors name the target, not the temp file.
void finish(std::FILE* f, const std::string& tmp, const std::string& path) {
  auto fail = [&](const char* what, const std::string& p) {
    const int e = errno;
    if (!tmp.empty()) ::unlink(tmp.c_str());
    errno = e;
    return io_error(what, p);
  };
  if (std::fflush(f) != 0 || (!tmp.empty() && ::fsync(fileno(f)) != 0)) {
    const int e = errno;
    std::fclose(f);
    errno = e;
    throw fail("cannot write", path);
  }
  if (std::fclose(f) != 0) throw fail("cannot write", path);
  if (tmp.empty()) return;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw fail("cannot rename onto", path);
  fsync_dir(path);
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicWriter w(path);
  w.write(bytes);
  w.commit();
}

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw DataError(path, 0, std::string("cannot open: ") + std::strerror(errno));
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  const bool err = std::ferror(f);
  const int e = errno;
  std::fclose(f);
  if (err) throw DataError(path, 0, std::string("cannot read: ") + std::strerror(e));
  return s;
}

void read_exactly_at(int fd, uint64_t offset, void* dst, uint64_t n, const std::string& path) {
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, out, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw DataError(path, 0, "read failed at offset " + std::to_string(offset) +
                                   (r < 0 ? ": " + std::string(std::strerror(errno)) : ": the file shrank while open"));
    out += r, offset += static_cast<uint64_t>(r), n -= static_cast<uint64_t>(r);
  }
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir, const std::vector<std::string>& targets) {
  std::vector<fs::path> stale;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string file = e.path().filename().string();
    for (const std::string& t : targets) {
      if (writer_gone(temp_file_pid(file, t)) && e.is_regular_file(ec)) stale.push_back(e.path());
    }
  }
  std::vector<std::string> removed;
  for (const fs::path& p : stale)
    if (fs::remove(p, ec)) removed.push_back(p.filename().string());
  return removed;
}

namespace {
// Who may judge a pid: the same boot, pid namespace and host (a /tmp shared between containers, or
// a $TMPDIR on a filesystem other nodes see, holds directories whose pids mean nothing here).
std::string scratch_owner_id() {
  std::string boot;
  if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char b[64] = {};
    if (std::fgets(b, sizeof b, f)) boot = b;
    std::fclose(f);
    while (!boot.empty() && (boot.back() == '\n' || boot.back() == ' ')) boot.pop_back();
  }
  char ns[128] = {}, host[256] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  if (n < 0) ns[0] = 0;
  ::gethostname(host, sizeof host - 1);
  return boot + " " + ns + " " + host + "\n";
}
constexpr const char* kOwnerFile = ".cairn-owner";
}  // namespace

void mark_scratch_dir(const std::string& dir) { write_file_atomic((fs::path(dir) / kOwnerFile).string(), scratch_owner_id()); }

std::vector<std::string> remove_stale_temp_dirs(const std::string& parent, const std::string& prefix) {
  std::vector<fs::path> stale;
  std::error_code ec;
  const std::string me = scratch_owner_id();
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (!decimal(digits)) continue;
    struct stat st;
    // only our own directories (a shared /tmp holds other users' too), never through a symlink
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) continue;
    // only a directory marked by a process of this boot, pid namespace and host
    std::string owner;
    try {
      owner = read_file((e.path() / kOwnerFile).string());
    } catch (const std::exception&) {
      continue;
    }
    if (owner == me && writer_gone(std::stol(digits))) stale.push_back(e.path());
  }
  std::vector<std::string> removed;
  for (const fs::path& p : stale)
    if (fs::remove_all(p, ec) > 0 && !ec) removed.push_back(p.filename().string());
  return removed;
}

void copy_file_atomic(const std::string& src, const std::string& dst) { write_file_atomic(dst, read_file(src)); }

AtomicWriter::AtomicWriter(const std::string& path) : path_(path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      errno = EISDIR;
      throw io_error("cannot write", path);
    }
    // A device, FIFO or socket (/dev/null, /dev/stdout, a pipe): there is no file to replace, so it is
    // written in place. Renaming a temp file over it would replace the device node itself.
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw io_error("cannot open", path);
    return;
  }
  tmp_ = temp_name(path);
  slot_ = publish_inflight(tmp_);
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) {
    const int e = errno;
    retire_inflight(slot_);
    errno = e;
    throw io_error("cannot create", path);  // named as the user gave it (a missing directory, no write permission)
  }
}

AtomicWriter::~AtomicWriter() {
  if (f_) {
    std::fclose(f_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }
  retire_inflight(slot_);
}

void AtomicWriter::write(std::string_view bytes) {
  if (!f_) throw std::logic_error("AtomicWriter: write after commit");
  if (std::fwrite(bytes.data(), 1, bytes.size(), f_) != bytes.size())
    throw io_error("cannot write", path_);
}

void AtomicWriter::commit() {
  if (!f_) return;
  std::FILE* f = f_;
  f_ = nullptr;
  try {
    finish(f, tmp_, path_);
  } catch (...) {
    retire_inflight(slot_);
    throw;
  }
  retire_inflight(slot_);
}

void remove_inflight_temp_files() noexcept {
  for (InflightSlot& s : g_inflight)
    if (s.ready.load()) ::unlink(s.path);
}

}  // namespace cairn
