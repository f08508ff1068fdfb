// Shared subcommand helpers, see common.h.
#include "cli/common.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "cairn/errors.h"
#include "cairn/io.h"
#include "util/threads.h"

namespace cairn::cli {

void add_backend_options(cxxopts::Options& o) {
  o.add_options("device")
    ("device", "cpu|cuda", cxxopts::value<std::string>()->default_value("cpu"))
    ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
    ("cuda-math", "cuda: GEMM precision bf16|tf32|fp32 (attention always bf16 MMA)",
     cxxopts::value<std::string>()->default_value("bf16"))
    ("cpu-math", "cpu: precision of the linear layers' GEMMs fp32|bf16 (bf16: oneDNN, fp32 accumulation)",
     cxxopts::value<std::string>()->default_value("fp32"));
}

int threads_option(const cxxopts::ParseResult& a) {
  const int t = a["threads"].as<int>();
  if (t < 0 || t > kMaxThreads)
    throw UsageError("--threads must be 0 (all cores) to " + std::to_string(kMaxThreads) + ", not " + std::to_string(t));
  return t;
}

BackendOptions backend_options(const cxxopts::ParseResult& a) {
  BackendOptions b;
  b.device = a["device"].as<std::string>();
  b.threads = threads_option(a);
  b.cuda_math = a["cuda-math"].as<std::string>();
  b.cpu_math = a["cpu-math"].as<std::string>();
  if (b.device != "cpu" && b.device != "cuda") throw UsageError("--device must be cpu or cuda");
  if (b.cuda_math != "bf16" && b.cuda_math != "tf32" && b.cuda_math != "fp32")
    throw UsageError("--cuda-math must be bf16, tf32 or fp32");
  if (b.cpu_math != "fp32" && b.cpu_math != "bf16") throw UsageError("--cpu-math must be fp32 or bf16");
  if (b.cpu_math != "fp32" && b.device != "cpu") throw UsageError("--cpu-math is for --device cpu (see --cuda-math)");
  const char* verbose = std::getenv("CAIRN_CUDA_VERBOSE");
  b.verbose = verbose && *verbose && std::string(verbose) != "0";
  return b;
}

ModelConfig model_config_from_flags(const cxxopts::ParseResult& a, const Tokenizer& tok) {
  ModelConfig c;
  try {
    c = preset_config(a["preset"].as<std::string>());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (a.count("d-model")) c.d_model = a["d-model"].as<int>();
  if (a.count("n-layers")) c.n_layers = a["n-layers"].as<int>();
  if (a.count("n-heads")) c.n_heads = a["n-heads"].as<int>();
  if (a.count("d-ff")) c.d_ff = a["d-ff"].as<int>();
  if (a.count("max-seq-len")) c.max_seq_len = a["max-seq-len"].as<int>();
  if (a.count("arch")) c.arch = a["arch"].as<std::string>();
  if (a.count("n-kv-heads")) c.n_kv_heads = a["n-kv-heads"].as<int>();
  c.vocab_size = tok.vocab_size();
  c.bos_id = tok.bos_id(), c.eos_id = tok.eos_id(), c.pad_id = tok.pad_id();
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return c;
}

void apply_constitution(const cxxopts::ParseResult& a, ModelConfig* cfg) {
  if (!a.count("constitution")) return;
  const std::string path = a["constitution"].as<std::string>();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception&) {
    throw DataError(path, 0, "not valid JSON");
  }
  const auto it = j.find("principles");
  if (it == j.end() || !it->is_array() || it->empty()) throw DataError(path, 0, "needs a non-empty \"principles\" list");
  cfg->head_names.clear(), cfg->head_weights.clear();
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& p = (*it)[i];
    const std::string where = "principles[" + std::to_string(i) + "]";
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string() || p["name"].get<std::string>().empty())
      throw DataError(path, 0, where + " needs a non-empty string \"name\"");
    for (unsigned char ch : p["name"].get<std::string>())  // it names a head in progress lines and reports
      if (ch < 0x20 || ch == 0x7f) throw DataError(path, 0, where + ": \"name\" holds a control character");
    const double w = p.contains("weight") ? (p["weight"].is_number() ? p["weight"].get<double>() : -1.0) : 1.0;
    if (!(w >= 0 && w <= FLT_MAX)) throw DataError(path, 0, where + ": \"weight\" must be a finite number ≥ 0");
    for (const auto& n : cfg->head_names)
      if (n == p["name"]) throw DataError(path, 0, where + ": duplicate principle \"" + n + "\"");
    cfg->head_names.push_back(p["name"].get<std::string>());
    cfg->head_weights.push_back(static_cast<float>(w));
  }
  if (std::all_of(cfg->head_weights.begin(), cfg->head_weights.end(), [](float w) { return w == 0.0f; }))
    throw DataError(path, 0, "every principle has weight 0: the composite reward (what score, eval and serve report) "
                             "would always be 0; give at least one a weight > 0");
  cfg->n_heads_out = static_cast<int>(cfg->head_names.size());
}

void check_output_not_input(const std::string& output, const std::vector<std::string>& inputs) {
  for (const std::string& in : inputs) {
    std::error_code ec;  // a missing file is no clash
    if (std::filesystem::equivalent(in, output, ec))
      throw UsageError("the output " + output + " is the input " + in + ": writing it would replace the input");
  }
}

std::vector<TokenizedPair> tokenize_pairs(const std::vector<Pair>& pairs, const Tokenizer& tok, const ModelConfig& cfg,
                                          TokenizeStats* stats, int threads) {
  std::map<std::string, int> head_of;
  for (int h = 0; h < cfg.n_heads_out; ++h) head_of[cfg.head_names[h]] = h;
  std::vector<TokenizedPair> out(pairs.size());
  long cut = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : cut) num_threads(resolve_threads(threads))
  for (size_t i = 0; i < pairs.size(); ++i) {
    const Pair& p = pairs[i];
    TokenizedPair& t = out[i];
    bool tc = false, tr = false;
    t.chosen = tok.encode_for_model(p.chosen, cfg.max_seq_len, &tc);
    t.rejected = tok.encode_for_model(p.rejected, cfg.max_seq_len, &tr);
    cut += tc + tr;
    t.label = p.label, t.margin = p.margin, t.weight = p.weight;
    t.chosen_chars = p.chosen_chars, t.rejected_chars = p.rejected_chars;
    auto h = head_of.find(p.principle);
    t.head = (cfg.n_heads_out > 1 && h != head_of.end()) ? h->second : -1;
  }
  if (!stats) return out;
  stats->sequences += 2 * static_cast<long>(pairs.size()), stats->truncated += cut;
  if (cfg.n_heads_out > 1)
    for (const Pair& p : pairs)
      if (!p.principle.empty() && !head_of.count(p.principle)) {
        if (stats->unknown_principle++ == 0) stats->unknown_example = p.principle;
      }
  return out;
}

void add_prefix_sharing_option(cxxopts::Options& o) {
  o.add_options("device")
    ("prefix-sharing", "auto|on|off: compute a pair's common token prefix once (auto: on, except on cuda "
     "until its kernels are validated on a device)", cxxopts::value<std::string>()->default_value("auto"))
    ("no-prefix-sharing", "the same as --prefix-sharing off");
}

bool use_prefix_sharing(const cxxopts::ParseResult& a, const std::vector<TokenizedPair>& pairs) {
  std::string mode = a["prefix-sharing"].as<std::string>();
  if (mode != "auto" && mode != "on" && mode != "off") throw UsageError("--prefix-sharing must be auto, on or off");
  if (a.count("no-prefix-sharing")) {
    if (mode == "on") throw UsageError("--no-prefix-sharing contradicts --prefix-sharing on");
    mode = "off";
  }
  // The CUDA kernels implement the layout and have their tests (tests/gpu), but no device has run
  // them yet: until one has, sharing on CUDA is opt-in.
  const bool cuda = a["device"].as<std::string>() == "cuda";
  const bool on = mode == "on" || (mode == "auto" && !cuda);
  const SharingStats st = sharing_stats(pairs);
  const double pct = 100.0 * st.shared_tokens / std::max(1L, st.sequence_tokens);
  // the tokens of one pass over the pairs as the model runs them: what a run's length is planned by
  const long work = st.sequence_tokens - (on ? st.shared_tokens : 0);
  const double per_pair = static_cast<double>(work) / std::max<size_t>(1, pairs.size());
  if (on)
    std::fprintf(stderr, "prefix sharing: %ld of %zu pairs share a prefix; %.1f%% of the tokens are computed once instead "
                 "of twice (%ld tokens per pass, %.0f per pair)\n",
                 st.pairs_sharing, pairs.size(), pct, work, per_pair);
  else
    std::fprintf(stderr, "prefix sharing: off (%s); it would save %.1f%% of the tokens (%ld tokens per pass, %.0f per pair)\n",
                 mode == "off" ? "as asked" : "the default on cuda; --prefix-sharing on to use it", pct, work, per_pair);
  return on;
}

void report_data(const std::string& path, const ReadStats& st, size_t usable) {
  std::fprintf(stderr, "%s: %zu pairs from %ld lines", path.c_str(), usable, st.lines);
  if (st.skipped) std::fprintf(stderr, ", %ld malformed lines skipped", st.skipped);
  if (st.blank) std::fprintf(stderr, ", %ld blank", st.blank);
  if (st.empty_responses) std::fprintf(stderr, ", %ld with an empty response", st.empty_responses);
  std::fprintf(stderr, "\n");
}

void report_tokenize(const TokenizeStats& t, const ModelConfig& cfg) {
  if (t.truncated)
    std::fprintf(stderr, "note: %ld of %ld sequences (%.1f%%) were longer than max_seq_len %d and were truncated from the left (their ends kept)\n",
                 t.truncated, t.sequences, 100.0 * t.truncated / std::max(1L, t.sequences), cfg.max_seq_len);
  if (t.unknown_principle) {
    std::string heads;
    for (const auto& n : cfg.head_names) heads += (heads.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "warning: %ld pairs name a principle that is not a reward head of this model (e.g. \"%s\"; heads: %s); they use the composite reward\n",
                 t.unknown_principle, t.unknown_example.c_str(), heads.c_str());
  }
}

}  // namespace cairn::cli
