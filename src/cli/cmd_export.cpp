// `cairn export --format hf --model RUN --out DIR`: the run as a Hugging Face sequence-classification
// model (include/cairn/export.h) that AutoModelForSequenceClassification loads with cairn's rewards.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <cxxopts.hpp>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/export.h"
#include "cli/command.h"
#include "cli/common.h"

namespace cairn::cli {
namespace {

namespace fs = std::filesystem;

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Write a run directory as a Hugging Face model (transformers, TRL, OpenRLHF, vLLM load it).");
  o.add_options()
    ("format", "hf (the only one)", cxxopts::value<std::string>()->default_value("hf"))
    ("model", "run directory", cxxopts::value<std::string>())
    ("out", "output directory (created)", cxxopts::value<std::string>())
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << R"(
Writes config.json (LlamaForSequenceClassification / GPT2ForSequenceClassification, one label per
reward head), model.safetensors, tokenizer.json, tokenizer_config.json (with the chat template) and
special_tokens_map.json. The composite reward is Σ cairn_head_weights[h] · logits[h] (config.json).
)";
    return 0;
  }
  if (a["format"].as<std::string>() != "hf") throw UsageError("--format must be hf");
  if (!a.count("model") || !a.count("out")) throw UsageError("--model and --out are required");
  const std::string dir = a["model"].as<std::string>(), out = a["out"].as<std::string>();
  // The Hugging Face files share names with a run's (config.json, model.safetensors): writing them
  // into the run itself, or into any run directory, would destroy it.
  check_output_not_input(out, {dir});
  if (std::error_code ec; fs::exists(fs::path(out) / "optimizer.safetensors", ec) ||
                          fs::exists(fs::path(out) / "trainer_state.json", ec))
    throw UsageError("--out " + out + " holds a cairn run directory; exporting there would overwrite it");
  ModelConfig cfg;
  std::vector<float> params;
  load_model(dir, &cfg, &params);
  const auto tok = load_run_tokenizer(dir);
  export_hf(cfg, params, *tok, out);
  std::fprintf(stderr, "exported %s (%s, %d reward head%s) to %s\n", dir.c_str(), cfg.arch.c_str(), cfg.n_heads_out,
               cfg.n_heads_out > 1 ? "s" : "", out.c_str());
  return 0;
}

CAIRN_COMMAND("export", "write a run as a Hugging Face sequence-classification model", run);

}  // namespace
}  // namespace cairn::cli
