// `cairn score`: streams JSONL records in, writes each record unchanged plus "reward" (and "rewards"
// per head for multi-head models), in order. Memory is bounded by one batch. The output file appears
// atomically when every record is scored; a bad record (without --skip-bad) leaves no output. Under
// mpirun the records are split over the ranks and rank 0 writes (docs/distributed.md).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "cairn/data.h"
#include "cairn/dist.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/run_model.h"
#include "cli/scoring.h"
#include "train/progress.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

// The record with reward fields added. Appends text when the record has no such keys (keeps its
// bytes exactly); otherwise re-serializes it with the fields replaced.
std::string with_rewards(const std::string& line, const nlohmann::json& rec, const RecordScorer& scorer, const float* r) {
  const bool multi = scorer.config().n_heads_out > 1;
  const nlohmann::ordered_json composite = reward_number(scorer.composite(r));
  const nlohmann::ordered_json per_head = scorer.per_head(r);
  if (!rec.contains("reward") && !rec.contains("rewards")) {
    const size_t end = line.find_last_not_of(" \t\r");
    std::string out = line.substr(0, end);  // drops the closing '}'
    out += (rec.empty() ? "" : ",");
    out += "\"reward\":" + composite.dump();
    if (multi) out += ",\"rewards\":" + per_head.dump();
    return out + "}";
  }
  nlohmann::ordered_json o = nlohmann::ordered_json::parse(line);
  o["reward"] = composite;
  if (multi) o["rewards"] = per_head;
  return o.dump();
}

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Add a reward to every record of a JSONL file (streaming, order kept).");
  o.add_options()
    ("model", "run directory", cxxopts::value<std::string>())
    ("input", "records: {\"prompt\",\"response\"} (text or messages) or {\"text\"}; .gz ok", cxxopts::value<std::string>())
    ("output", "output JSONL (each record + \"reward\")", cxxopts::value<std::string>())
    ("batch-size", "records per forward pass", cxxopts::value<int>()->default_value("64"))
    ("skip-bad", "pass malformed records through unscored (counted) instead of stopping with exit 3")
    ("h,help", "show this help");
  add_backend_options(o);
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help();
    return 0;
  }
  for (const char* k : {"model", "input", "output"})
    if (!a.count(k)) throw UsageError(std::string("--") + k + " is required");
  const int bs = a["batch-size"].as<int>();
  if (bs < 1) throw UsageError("--batch-size must be ≥ 1");
  const bool skip_bad = a.count("skip-bad") > 0;
  const std::string in_path = a["input"].as<std::string>(), out_path = a["output"].as<std::string>();
  check_output_not_input(out_path, {in_path});
  // rank 0 writes; before the model loads, so a bad --output fails at once
  std::unique_ptr<AtomicWriter> out = dist::world().root() ? std::make_unique<AtomicWriter>(out_path) : nullptr;
  LoadedRun run = load_run(a["model"].as<std::string>(), backend_options(a));
  const ModelConfig& cfg = run.model->config();
  const RecordScorer scorer(cfg, *run.tokenizer);

  LineReader in(in_path);
  struct Item {
    std::string line;
    long line_no;
    nlohmann::json rec;
    bool scored;
    std::string text;  // rendered, tokenized by the rank that scores it
  };
  // Data parallel (docs/distributed.md): every rank reads every record; each forwards its slice of
  // the scored records of a batch of batch-size × ranks, and rank 0 writes them all, in input order.
  const dist::Comm& world = dist::world();
  const size_t group = static_cast<size_t>(bs) * world.size();
  std::vector<Item> items;
  size_t n_scored = 0;  // items of `items` to score
  TokenBatch batch;
  std::vector<float> mine, rewards;
  long n_records = 0, n_tokens = 0, n_bad = 0;
  double n_truncated = 0;
  const double t0 = now_seconds();
  Progress progress("scored", -1, 100);
  const int H = cfg.n_heads_out;

  auto flush = [&] {
    const auto [lo, hi] = dist::slice(n_scored, world.rank(), world.size());
    batch.clear();
    size_t k = 0;
    for (const Item& it : items) {
      if (!it.scored) continue;
      if (k >= lo && k < hi) {
        bool cut = false;
        batch.add(scorer.tokenize(it.text, &cut));
        n_truncated += cut;
      }
      ++k;
    }
    mine.clear();
    if (batch.n_seqs() > 0) run.model->forward(batch, mine, false);
    rewards.resize(n_scored * H);
    world.allgatherv(mine.data(), mine.size(), rewards.data(), world.slice_counts(n_scored, H));
    double tokens = batch.n_tokens();
    world.allreduce_sum(&tokens, 1);
    n_tokens += static_cast<long>(tokens);
    k = 0;
    for (const Item& it : items) {
      if (!world.root()) break;
      if (it.scored) {
        const float* r = rewards.data() + (k++) * H;
        if (const char* bad = scorer.non_finite(r))
          throw std::runtime_error(in_path + ":" + std::to_string(it.line_no) + ": the reward is not finite (" + bad +
                                   "): the model overflows on this record");
        out->write(with_rewards(it.line, it.rec, scorer, r));
      } else {
        out->write(it.line);
      }
      out->write("\n");
    }
    items.clear();
    n_scored = 0;
    char f[96];
    std::snprintf(f, sizeof f, "records  %.0f tokens/s", n_tokens / std::max(1e-9, now_seconds() - t0));
    progress.update(n_records, f);
  };
  std::string line;
  while (in.next(line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Item it{line, in.line_number(), {}, true, {}};
    try {
      it.rec = parse_json_line(line, in_path, in.line_number());
      it.text = scorer.render(it.rec, in_path, in.line_number());
    } catch (const DataError& e) {
      if (!skip_bad) throw;
      if (n_bad < 5) std::fprintf(stderr, "passing through unscored: %s\n", e.what());
      ++n_bad;
      it.scored = false;
    }
    ++n_records;
    n_scored += it.scored;
    items.push_back(std::move(it));
    if (n_scored >= group) flush();
  }
  flush();
  world.allreduce_sum(&n_truncated, 1);
  if (!world.root()) return 0;
  out->commit();
  progress.finish();
  const double dt = now_seconds() - t0;
  std::fprintf(stderr, "scored %ld records (%ld tokens) in %.1fs: %.1f records/s, %.0f tokens/s", n_records, n_tokens, dt,
               n_records / dt, n_tokens / dt);
  if (n_bad) std::fprintf(stderr, "; %ld malformed records passed through unscored", n_bad);
  if (n_truncated) std::fprintf(stderr, "; %.0f truncated to max_seq_len %d", n_truncated, cfg.max_seq_len);
  std::fprintf(stderr, "\n");
  return 0;
}

CAIRN_COMMAND("score", "add a reward to every record of a JSONL file", run);

}  // namespace
}  // namespace cairn::cli
