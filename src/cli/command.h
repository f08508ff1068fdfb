// Subcommand registry: each src/cli/cmd_*.cpp registers itself with CAIRN_COMMAND; main.cpp dispatches.
// A command returns its exit code; it may throw DataError (exit 3) or UsageError (exit 2).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace cairn::cli {

using CommandFn = std::function<int(int argc, char** argv)>;

struct Command {
  std::string name;     // "train", "bench attention", ...
  std::string summary;  // one line for `cairn --help`
  CommandFn run;        // argv[0] is "cairn <name>"
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(std::string name, std::string summary, CommandFn fn) {
    registry().push_back({std::move(name), std::move(summary), std::move(fn)});
  }
};

}  // namespace cairn::cli

#define CAIRN_CMD_CAT2(a, b) a##b
#define CAIRN_CMD_CAT(a, b) CAIRN_CMD_CAT2(a, b)
#define CAIRN_COMMAND(name, summary, fn) \
  static ::cairn::cli::Registrar CAIRN_CMD_CAT(cairn_command_, __LINE__)(name, summary, fn)
