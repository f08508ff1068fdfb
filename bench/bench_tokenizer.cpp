// Encoding throughput of a tokenizer on real texts, one thread and all threads, as train, eval and
// score tokenize (Tokenizer::encode, the texts in input order, independent per text).
//   build/bench_tokenizer --tokenizer RUN/tokenizer.json --texts texts.jsonl [--limit N] [--threads T]
// texts.jsonl: one JSON string per line (bench/compare_tokenizers.py writes it from a pairs file).
// Prints one JSON object: texts, bytes, tokens and, for 1 thread and T threads, cold (a fresh tokenizer)
// and warm (its second pass) seconds (median of --rounds), MB/s and tokens/s.
// bench/compare_tokenizers.py runs it beside Hugging Face tokenizers.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cxxopts.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cairn/bpe_tokenizer.h"
#include "cairn/tokenizer.h"

namespace {

std::vector<std::string> read_texts(const std::string& path, size_t limit) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> texts;
  std::string line;
  while (texts.size() < limit && std::getline(in, line))
    if (!line.empty()) texts.push_back(nlohmann::json::parse(line).get<std::string>());
  return texts;
}

// Seconds to encode every text once with `threads` threads; total tokens into *tokens.
double encode_all(const cairn::Tokenizer& tok, const std::vector<std::string>& texts, int threads, long* tokens) {
  long n = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : n) num_threads(threads)
  for (size_t i = 0; i < texts.size(); ++i) n += static_cast<long>(tok.encode(texts[i]).size());
  *tokens = n;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  cxxopts::Options o("bench_tokenizer", "Byte-level BPE encoding throughput on real texts (JSON on stdout).");
  o.add_options()("tokenizer", "a tokenizer.json (a cairn run directory has one)", cxxopts::value<std::string>())(
      "texts", "JSONL, one JSON string per line", cxxopts::value<std::string>())(
      "limit", "at most this many texts", cxxopts::value<size_t>()->default_value("0"))(
      "threads", "the second thread count timed (0: all cores)", cxxopts::value<int>()->default_value("0"))(
      "rounds", "timed passes per thread count (median quoted)", cxxopts::value<int>()->default_value("3"))(
      "h,help", "this help");
  const auto a = o.parse(argc, argv);
  if (a.count("help") || !a.count("tokenizer") || !a.count("texts")) {
    std::printf("%s", o.help().c_str());
    return a.count("help") ? 0 : 2;
  }
  const std::string tok_path = a["tokenizer"].as<std::string>();
  const size_t limit = a["limit"].as<size_t>() ? a["limit"].as<size_t>() : ~size_t(0);
  const int threads = a["threads"].as<int>() > 0 ? a["threads"].as<int>() : omp_get_max_threads();
  const int rounds = std::max(1, a["rounds"].as<int>());
  const std::vector<std::string> texts = read_texts(a["texts"].as<std::string>(), limit);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  nlohmann::json out = {{"bench", "tokenizer"}, {"tokenizer", tok_path}, {"texts", texts.size()}, {"bytes", bytes}};
  auto figures = [&](const std::vector<double>& secs, long tokens) {
    const double s = median(secs);
    return nlohmann::json{{"seconds", s}, {"rounds", secs}, {"mb_per_s", bytes / s / 1e6}, {"tokens_per_s", tokens / s}};
  };
  for (int t : {1, threads}) {
    // cold: a freshly loaded tokenizer per pass (empty word caches), as train/eval/score meet their
    // input; warm: a second pass through the same one, as `serve` runs after a while.
    std::vector<double> cold, warm;
    long tokens = 0, again = 0;
    for (int r = 0; r < rounds; ++r) {
      const auto tok = cairn::load_bpe_tokenizer(tok_path);
      cold.push_back(encode_all(*tok, texts, t, &tokens));
      warm.push_back(encode_all(*tok, texts, t, &again));
      if (again != tokens) throw std::runtime_error("a second pass gave another token count");
    }
    out["tokens"] = tokens;
    out["threads_" + std::to_string(t)] = {{"cold", figures(cold, tokens)}, {"warm", figures(warm, tokens)}};
    if (threads == 1) break;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
  return 1;
}
