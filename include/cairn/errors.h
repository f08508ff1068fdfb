// Error types that map to the exit codes of docs/cli.md#exit-codes: DataError → 3, UsageError → 2, anything else → 1.
#pragma once
#include <stdexcept>
#include <string>

namespace cairn {

// Bad input data. what() reads "file:line: message" when the place is known.
class DataError : public std::runtime_error {
 public:
  explicit DataError(const std::string& msg) : std::runtime_error(msg) {}
  DataError(const std::string& file, long line, const std::string& msg)
      : std::runtime_error(file + (line > 0 ? ":" + std::to_string(line) : std::string()) + ": " + msg) {}
};

// Bad command-line usage.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& msg) : std::runtime_error(msg) {}
};

// A long computation stopped because the user asked (SIGINT/SIGTERM while training, see
// Model::set_interrupt). Not an error: the trainer catches it and saves a checkpoint.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

}  // namespace cairn
