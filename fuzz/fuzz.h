// Shared by the libFuzzer harnesses of fuzz/ (docs/fuzzing.md). A harness feeds its input through
// cairn's public loaders. The error those loaders document, DataError, is an expected outcome; anything
// else is a finding: a crash or sanitizer report (ASan/UBSan abort), a hang or blow-up (libFuzzer's
// -timeout / -rss_limit_mb), an exception of another type or a broken invariant (both abort here, so
// libFuzzer keeps the input).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "cairn/errors.h"

namespace cairn::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "cairn fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}
inline void check(bool ok, const std::string& what) {
  if (!ok) finding("broken invariant: " + what);
}

// Runs fn(); true when it returned, false when it threw DataError (printed when CAIRN_FUZZ_VERBOSE is
// set, to see why a seed goes no deeper). Any other exception is a finding.
template <class Fn>
bool expect_data_error(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const DataError& e) {
    static const bool verbose = std::getenv("CAIRN_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "DataError: %s\n", e.what());
    return false;
  } catch (const std::exception& e) {
    finding(std::string("uncaught ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding("uncaught exception of a non-std type");
  }
}

// The input's parts, split at the first `n - 1` NUL bytes (the last part keeps any further NULs).
// Multi-file inputs put a JSON file first: JSON text holds no raw NUL, so the split is unambiguous.
inline std::vector<std::string> parts(const uint8_t* data, size_t size, size_t n) {
  std::vector<std::string> out;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (out.size() + 1 < n) {
    const size_t at = rest.find('\0');
    if (at == std::string_view::npos) break;
    out.emplace_back(rest.substr(0, at));
    rest.remove_prefix(at + 1);
  }
  out.emplace_back(rest);
  out.resize(n);
  return out;
}

// A directory of this process under $TMPDIR (scripts/fuzz.sh points it at /dev/shm), for loaders
// that take a path. Removed at exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_((std::filesystem::temp_directory_path() / ("cairn-fuzz-" + name + "-" + std::to_string(::getpid()))).string()) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes bytes to name (replacing it); the path.
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::string p = file(name);
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  void remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove(file(name), ec);
  }

 private:
  std::string path_;
};

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The '\n'-separated pieces of text, as a JSONL reader sees its lines ("a\nb\n" → "a", "b"; a last
// piece without '\n' included; '\r' kept).
inline std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  }
  return out;
}

}  // namespace cairn::fuzz
