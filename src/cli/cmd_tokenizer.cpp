// `cairn tokenizer train`: a SentencePiece model on the rendered text of pair files.
#include <cstdio>
#include <iostream>

#include <cxxopts.hpp>

#include "cairn/errors.h"
#include "cairn/tokenizer.h"
#include "cli/command.h"
#include "cli/common.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Train a SentencePiece tokenizer (BPE or unigram) on the text of JSONL pair files.");
  o.add_options()
    ("input", "pair file(s), repeatable (.gz ok)", cxxopts::value<std::vector<std::string>>())
    ("out", "output .model file", cxxopts::value<std::string>())
    ("vocab-size", "vocabulary size", cxxopts::value<int>()->default_value("8192"))
    ("type", "bpe | unigram", cxxopts::value<std::string>()->default_value("bpe"))
    ("max-sentences", "paragraphs sampled for training", cxxopts::value<long>()->default_value(std::to_string(kTokenizerMaxSentences)))
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << "\nIds: pad 0, bos 1, eos 2, unk 3; byte fallback, so no text is unknown.\n";
    return 0;
  }
  if (!a.count("input") || !a.count("out")) throw UsageError("--input and --out are required");
  const auto inputs = a["input"].as<std::vector<std::string>>();
  const std::string out = a["out"].as<std::string>();
  check_output_not_input(out, inputs);
  const int asked = a["vocab-size"].as<int>();
  if (a["max-sentences"].as<long>() < 1) throw UsageError("--max-sentences must be ≥ 1");
  const double t0 = now_seconds();
  // Without an explicit --vocab-size, the default is capped to what the text supports.
  const int vocab = train_tokenizer(inputs, out, asked, a["type"].as<std::string>(), a["max-sentences"].as<long>(),
                                    a.count("vocab-size") == 0);
  if (vocab < asked) std::fprintf(stderr, "note: the text supports only %d pieces (default --vocab-size %d)\n", vocab, asked);
  std::fprintf(stderr, "tokenizer: %s (%s, vocab %d) in %.1fs\n", out.c_str(), a["type"].as<std::string>().c_str(), vocab,
               now_seconds() - t0);
  return 0;
}

CAIRN_COMMAND("tokenizer train", "train a SentencePiece tokenizer on pair files", run);

}  // namespace
}  // namespace cairn::cli
