// Where the tests find their external references, and how they run external programs: the Python venv made by scripts/setup.sh and the
// SmolLM2 GGUF fetched by scripts/get_smollm2.sh (CAIRN_SMOLLM2, set by scripts/test.sh; default the
// cache path). Tests that need them fail (not skip) when they are missing: CI must run them.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace cairn::test {

inline std::string python() { return CAIRN_PYTHON; }
inline std::string source_dir() { return CAIRN_SOURCE_DIR; }
inline std::string smollm2_gguf() {
  if (const char* p = std::getenv("CAIRN_SMOLLM2"); p && *p) return p;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/cairn/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// Runs a shell command, returns what it printed on stdout (and stderr if the command redirects it);
// *code gets its exit status (−1 when it did not exit normally).
inline std::string run_capture(const std::string& cmd, int* code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

}  // namespace cairn::test
