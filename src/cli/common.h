// Helpers shared by the subcommands: model config from flags, constitution → heads, tokenizing pairs
// with truncation counts, data reports on stderr.
#pragma once
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "cairn/backend.h"
#include "cairn/config.h"
#include "cairn/data.h"
#include "cairn/tokenizer.h"
#include "train/batching.h"

namespace cairn::cli {

// --device, --threads, --cuda-math, --cpu-math: every command that runs a model. The environment variable
// CAIRN_CUDA_VERBOSE=1 asks the CUDA backend to print each GEMM plan it makes.
void add_backend_options(cxxopts::Options& o);
// --threads, checked: 0 (all cores) to kMaxThreads, else a UsageError.
constexpr int kMaxThreads = 1024;
int threads_option(const cxxopts::ParseResult& a);
BackendOptions backend_options(const cxxopts::ParseResult& a);

// --preset + --d-model/--n-layers/... overrides; vocab and special ids from the tokenizer.
ModelConfig model_config_from_flags(const cxxopts::ParseResult& a, const Tokenizer& tok);
// --constitution FILE: {"principles": [{"name", "text", "weight"}]} → one reward head per principle.
void apply_constitution(const cxxopts::ParseResult& a, ModelConfig* cfg);

// --output (or --out) must not name one of the inputs: compared as files (device and inode), so a
// hard link or another spelling of the same path counts. UsageError, before anything is read.
void check_output_not_input(const std::string& output, const std::vector<std::string>& inputs);

struct TokenizeStats {
  long sequences = 0, truncated = 0;
  long unknown_principle = 0;  // pairs whose principle names no head of a multi-head model
  std::string unknown_example;
};
// Tokenizes both sides of every pair on `threads` threads (≤ 0: all cores); a pair's principle
// selects its head (none or unknown: composite).
std::vector<TokenizedPair> tokenize_pairs(const std::vector<Pair>& pairs, const Tokenizer& tok, const ModelConfig& cfg,
                                          TokenizeStats* stats, int threads = 0);

void report_data(const std::string& path, const ReadStats& st, size_t usable);
// --no-prefix-sharing (train, eval, bench train): docs/model.md#prefix-sharing.
void add_prefix_sharing_option(cxxopts::Options& o);
// Whether to share each pair's common prefix; prints what it saves on `pairs` (one line).
bool use_prefix_sharing(const cxxopts::ParseResult& a, const std::vector<TokenizedPair>& pairs);
// The truncation note and the unknown-principle warning (one line each, only when they apply).
void report_tokenize(const TokenizeStats& t, const ModelConfig& cfg);

}  // namespace cairn::cli
