// Crash-safe file writing: every file cairn produces goes through here. Data is written to a temp
// file in the target's directory, fsync'd, renamed over the target, and the directory fsync'd, so a
// reader (or a resumed run) sees the old file or the new one, never a torn one.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace cairn {

void write_file_atomic(const std::string& path, std::string_view bytes);
void copy_file_atomic(const std::string& src, const std::string& dst);
std::string read_file(const std::string& path);  // DataError when unreadable
// Reads exactly n bytes at `offset` of the open file `fd` (pread, retried on EINTR and short reads);
// DataError naming `path` on an error or when the file ends first ("the file shrank while open").
void read_exactly_at(int fd, uint64_t offset, void* dst, uint64_t n, const std::string& path);

// Removes from `dir` the temp files that writers of these target names left behind when killed
// (<target>.tmp.<pid>.<n>, the writer's pattern, nothing else), unless process <pid> is still alive
// (this one included). Returns the names removed.
std::vector<std::string> remove_stale_temp_files(const std::string& dir, const std::vector<std::string>& targets);
// Marks a scratch directory <parent>/<prefix><pid> as this process's (boot, pid namespace, host).
void mark_scratch_dir(const std::string& dir);
// Removes the scratch directories <parent>/<prefix><pid> of this user, marked by a process of this
// boot, pid namespace and host, whose process <pid> no longer exists (a killed tokenizer training
// leaves its corpus copy in /tmp/cairn-spm-<pid>). Unmarked or foreign ones stay. Returns their names.
std::vector<std::string> remove_stale_temp_dirs(const std::string& parent, const std::string& prefix);

// Streaming variant for large outputs (cairn score, cairn pairs): nothing appears at `path` until
// commit(); destroying an uncommitted writer removes its temp file and leaves `path` untouched.
// Every write, the flush, fsync, close and rename are checked (std::runtime_error naming `path`).
// A directory at `path` is refused when the writer is made; an existing target that is not a regular
// file (/dev/null, /dev/stdout, a FIFO) is written in place, since there is no file to replace.
class AtomicWriter {
 public:
  explicit AtomicWriter(const std::string& path);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  void write(std::string_view bytes);
  void commit();

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  int slot_ = -1;  // where tmp_ is published for remove_inflight_temp_files
};

// Removes the temp files of the AtomicWriters now writing (unlink(2) of names held in fixed slots;
// async-signal-safe): what a signal handler calls before it exits at once, so that an interrupt
// leaves no *.tmp.* file beside the outputs. Their targets are untouched.
void remove_inflight_temp_files() noexcept;

}  // namespace cairn
