// Where the tests find their external references: the Python venv made by scripts/setup.sh and the
// SmolLM2 GGUF fetched by scripts/get_smollm2.sh (CAIRN_SMOLLM2, set by scripts/test.sh; default the
// cache path). Tests that need them fail (not skip) when they are missing: CI must run them.
#pragma once
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

}  // namespace cairn::test
