// `cairn eval`: pairwise accuracy (bootstrap 95% CI), BT loss and the diagnostics a reward-model user
// needs (length baseline, reward–length correlation, length-split accuracy, calibration, per-principle
// accuracy). Table on stdout, or one JSON object with --json. Under mpirun the pairs are split over the
// ranks and rank 0 reports (docs/distributed.md).
#include <cstdio>
#include <iostream>

#include <cxxopts.hpp>

#include "cairn/data.h"
#include "cairn/dist.h"
#include "cairn/errors.h"
#include "cairn/objective.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/run_model.h"
#include "train/diagnostics.h"
#include "train/eval_pairs.h"
#include "train/progress.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Pairwise accuracy and diagnostics of a reward model on a pairs file.");
  o.add_options()
    ("model", "run directory", cxxopts::value<std::string>())
    ("pairs", "pairs JSONL (.gz ok)", cxxopts::value<std::string>())
    ("batch-pairs", "pairs per forward pass", cxxopts::value<int>()->default_value("32"))
    ("skip-bad", "skip malformed lines (counted) instead of stopping with exit 3")
    ("json", "print one JSON object")
    ("h,help", "show this help");
  add_backend_options(o);
  add_prefix_sharing_option(o);
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << R"(
Accuracy counts ties (equal rewards) as wrong and ignores pairs labelled 0.5. The length baseline
prefers the longer response. Lengths are response lengths in characters (Unicode code points).
Calibration compares sigma(r_chosen - r_rejected) with the labels: ECE over 10 bins, Brier score.
)";
    return 0;
  }
  if (!a.count("model") || !a.count("pairs")) throw UsageError("--model and --pairs are required");
  if (a["batch-pairs"].as<int>() < 1) throw UsageError("--batch-pairs must be ≥ 1");
  LoadedRun run = load_run(a["model"].as<std::string>(), backend_options(a));
  const ModelConfig& cfg = run.model->config();
  ReadStats rs;
  const std::string path = a["pairs"].as<std::string>();
  const ChatTemplate chat = ChatTemplate::by_name(cfg.chat_template, cfg.chat_system);
  std::vector<Pair> raw = read_pairs(path, a.count("skip-bad") > 0, &rs, chat);
  if (raw.empty()) throw DataError(path, 0, "no pairs");
  TokenizeStats trunc;
  std::vector<TokenizedPair> pairs = tokenize_pairs(raw, *run.tokenizer, cfg, &trunc, threads_option(a));
  report_tokenize(trunc, cfg);
  const double t0 = now_seconds();
  BTObjective obj(*run.model);
  const bool share = use_prefix_sharing(a, pairs);
  // Data parallel: each rank scores its slice; rank 0 reports on all of them.
  const dist::Comm& world = dist::world();
  // The progress line counts this rank's pairs (under mpirun only rank 0 prints: its share).
  const auto [lo, hi] = dist::slice(pairs.size(), world.rank(), world.size());
  Progress progress(world.distributed() ? "pairs scored (rank 0's share)" : "pairs scored", static_cast<long>(hi - lo), 20);
  const PairScores s =
      score_pairs_split(world, obj, cfg, pairs, a["batch-pairs"].as<int>(), share, [&](size_t done, size_t total) {
        char f[64];
        std::snprintf(f, sizeof f, "%.0f pairs/s", done / std::max(1e-9, now_seconds() - t0));
        progress.update(static_cast<long>(done), f, done == total);
      });
  progress.finish();
  const double dt = now_seconds() - t0;
  if (!world.root()) return 0;

  std::vector<PairRecord> recs(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    recs[i].r_chosen = s.chosen[i], recs[i].r_rejected = s.rejected[i], recs[i].label = pairs[i].label;
    recs[i].len_chosen = pairs[i].chosen_chars, recs[i].len_rejected = pairs[i].rejected_chars;
    recs[i].principle = raw[i].principle;
  }
  nlohmann::json j = diagnostics_json(recs, s.bt_loss);
  j["model"] = a["model"].as<std::string>();
  j["pairs_file"] = path;
  j["skipped_lines"] = rs.skipped;
  j["truncated_sequences"] = trunc.truncated;
  j["seconds"] = dt;
  j["pairs_per_s"] = static_cast<double>(pairs.size()) / std::max(1e-9, dt);
  j["prefix_sharing"] = share;
  j["sequence_tokens"] = s.sequence_tokens, j["computed_tokens"] = s.computed_tokens;
  if (a.count("json")) {
    std::cout << j.dump() << "\n";
    return 0;
  }
  auto pct = [](double x) { return 100.0 * x; };
  std::printf("cairn eval — %s on %s\n", a["model"].as<std::string>().c_str(), path.c_str());
  std::printf("  pairs                  %zu (%ld decided)\n", pairs.size(), j["decided_pairs"].get<long>());
  std::printf("  accuracy               %.2f%%  [95%% CI %.2f – %.2f]\n", pct(j["accuracy"].get<double>()),
              pct(j["accuracy_ci95"][0].get<double>()), pct(j["accuracy_ci95"][1].get<double>()));
  std::printf("  length baseline        %.2f%%  (longer response wins)\n", pct(j["length_baseline_accuracy"].get<double>()));
  std::printf("  mean BT loss           %.4f\n", j["bt_loss"].get<double>());
  std::printf("  reward~length          Pearson %+.3f   Spearman %+.3f\n", j["reward_length_pearson"].get<double>(),
              j["reward_length_spearman"].get<double>());
  for (const char* k : {"preferred_longer", "preferred_shorter", "equal_length", "similar_length"})
    std::printf("  acc, %-17s %6.2f%%  (%ld pairs)\n", k, pct(j["by_length"][k]["accuracy"].get<double>()),
                j["by_length"][k]["pairs"].get<long>());
  std::printf("  calibration            ECE %.4f   Brier %.4f\n", j["calibration"]["ece"].get<double>(),
              j["calibration"]["brier"].get<double>());
  if (j.contains("by_principle"))
    for (auto it = j["by_principle"].begin(); it != j["by_principle"].end(); ++it)
      std::printf("  principle %-12s %6.2f%%  (%ld pairs)\n", it.key().c_str(), pct(it.value()["accuracy"].get<double>()),
                  it.value()["pairs"].get<long>());
  if (trunc.truncated) std::printf("  note: %ld sequences truncated to max_seq_len %d\n", trunc.truncated, cfg.max_seq_len);
  return 0;
}

CAIRN_COMMAND("eval", "pairwise accuracy and length/calibration diagnostics on a pairs file", run);

}  // namespace
}  // namespace cairn::cli
