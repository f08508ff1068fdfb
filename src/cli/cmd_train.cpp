// `cairn train`: trains (or resumes) a Bradley–Terry reward model on JSONL preference pairs and
// writes the run directory of SPEC §5. Flow: read + render pairs → tokenizer (given, resumed, or
// trained into the run dir) → tokenize once (truncation counted) → steps over seeded, length-bucketed
// epochs → metrics.jsonl every --log-every steps, validation every --eval-every steps, checkpoint
// every --save-every steps, at the end and on Ctrl-C (which then exits with 130).
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "cairn/backend.h"
#include "cairn/checkpoint.h"
#include "cairn/data.h"
#include "cairn/io.h"
#include "cairn/errors.h"
#include "cairn/flops.h"
#include "cairn/objective.h"
#include "cairn/tokenizer.h"
#include "cli/command.h"
#include "cli/common.h"
#include "train/batching.h"
#include "train/eval_pairs.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "util/timing.h"

namespace fs = std::filesystem;

namespace cairn::cli {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Train (or resume) a Bradley–Terry reward model on JSONL preference pairs.");
  o.add_options("data")
    ("train", "training pairs (.jsonl or .jsonl.gz)", cxxopts::value<std::string>())
    ("valid", "validation pairs", cxxopts::value<std::string>())
    ("out", "run directory (created; see SPEC §5)", cxxopts::value<std::string>())
    ("tokenizer", "SentencePiece model; default: the run dir's, else one is trained", cxxopts::value<std::string>())
    ("skip-bad", "skip malformed lines (counted) instead of stopping with exit 3")
    ("constitution", "constitution JSON: one reward head per principle", cxxopts::value<std::string>())
    ("length-head", "length debiasing: a 'length' head absorbs the length signal and is dropped at scoring")
    ("length-lambda", "weight of the length decorrelation penalty", cxxopts::value<float>()->default_value("1.0"));
  o.add_options("model")
    ("preset", "tiny|small|base", cxxopts::value<std::string>()->default_value("tiny"))
    ("d-model", "override d_model", cxxopts::value<int>())
    ("n-layers", "override n_layers", cxxopts::value<int>())
    ("n-heads", "override n_heads", cxxopts::value<int>())
    ("d-ff", "override d_ff", cxxopts::value<int>())
    ("max-seq-len", "override max_seq_len", cxxopts::value<int>())
    ("vocab-size", "vocabulary of a tokenizer trained here", cxxopts::value<int>()->default_value("8192"));
  o.add_options("optimization")
    ("steps", "optimizer steps (default: from --epochs)", cxxopts::value<int>())
    ("epochs", "passes over the training pairs", cxxopts::value<double>()->default_value("1"))
    ("batch-pairs", "pairs per step", cxxopts::value<int>()->default_value("16"))
    ("lr", "peak learning rate", cxxopts::value<float>()->default_value("3e-4"))
    ("min-lr-ratio", "cosine floor as a fraction of --lr", cxxopts::value<float>()->default_value("0.1"))
    ("warmup", "linear warm-up steps (default 5% of steps)", cxxopts::value<int>())
    ("weight-decay", "AdamW decay (matrices and embeddings only)", cxxopts::value<float>()->default_value("0.01"))
    ("clip", "global gradient-norm clip (0: off)", cxxopts::value<float>()->default_value("1.0"))
    ("margin", "margin added to every pair's own margin", cxxopts::value<float>()->default_value("0"))
    ("center-coef", "weight of mean((r_c + r_r)^2), keeps rewards centred", cxxopts::value<float>()->default_value("0"))
    ("seed", "seed for init and data order", cxxopts::value<uint64_t>()->default_value("1"));
  o.add_options("run")
    ("device", "cpu|cuda", cxxopts::value<std::string>()->default_value("cpu"))
    ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
    ("resume", "continue from the run directory's last checkpoint")
    ("log-every", "steps between metrics.jsonl lines", cxxopts::value<int>()->default_value("10"))
    ("eval-every", "steps between validations (default: 10 per run)", cxxopts::value<int>())
    ("save-every", "steps between checkpoints (default: at each validation)", cxxopts::value<int>())
    ("eval-batch-pairs", "pairs per validation forward", cxxopts::value<int>()->default_value("32"))
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << "\nExit codes: 0 done, 1 failure, 2 usage, 3 bad input, 130 interrupted (checkpoint saved).\n";
    return 0;
  }
  for (const char* req : {"train", "out"})
    if (!a.count(req)) throw UsageError(std::string("--") + req + " is required");
  const std::string out = a["out"].as<std::string>();
  const bool resume = a.count("resume") > 0;
  const bool skip_bad = a.count("skip-bad") > 0;
  if (resume && !fs::exists(fs::path(out) / "optimizer.safetensors"))
    throw UsageError("--resume: no checkpoint in " + out);
  if (!resume && fs::exists(fs::path(out) / "optimizer.safetensors"))
    throw UsageError(out + " already holds a run; pass --resume to continue it or choose another --out");
  if (!resume) {  // a bad constitution fails before any data is read or a tokenizer trained
    ModelConfig probe;
    apply_constitution(a, &probe);
  }
  fs::create_directories(out);

  // ---- data and tokenizer ----
  ReadStats train_stats, valid_stats;
  std::vector<Pair> train_raw = read_pairs(a["train"].as<std::string>(), skip_bad, &train_stats);
  std::vector<Pair> valid_raw;
  if (a.count("valid")) valid_raw = read_pairs(a["valid"].as<std::string>(), skip_bad, &valid_stats);
  if (train_raw.empty()) throw DataError(a["train"].as<std::string>(), 0, "no usable pairs");

  const std::string tok_path = (fs::path(out) / "tokenizer.model").string();
  if (a.count("tokenizer")) {
    if (!resume) copy_file_atomic(a["tokenizer"].as<std::string>(), tok_path);
  } else if (!fs::exists(tok_path)) {
    std::fprintf(stderr, "training a tokenizer (vocab %d) on %s\n", a["vocab-size"].as<int>(),
                 a["train"].as<std::string>().c_str());
    train_tokenizer({a["train"].as<std::string>()}, tok_path, a["vocab-size"].as<int>(), "bpe");
  }
  Tokenizer tok(tok_path);

  ModelConfig cfg;
  nlohmann::json state;
  if (resume) {
    cfg = read_config(out);
  } else {
    cfg = model_config_from_flags(a, tok);
    apply_constitution(a, &cfg);
    if (a.count("length-head")) {
      cfg.head_names.push_back("length");
      cfg.head_weights.push_back(0.0f);  // scoring ignores it
      cfg.n_heads_out += 1;
    }
  }
  TruncationStats trunc;
  std::vector<TokenizedPair> train = tokenize_pairs(train_raw, tok, cfg, &trunc);
  std::vector<TokenizedPair> valid = tokenize_pairs(valid_raw, tok, cfg, &trunc);
  report_data(a["train"].as<std::string>(), train_stats, train.size());
  if (a.count("valid")) report_data(a["valid"].as<std::string>(), valid_stats, valid.size());
  report_truncation(trunc, cfg.max_seq_len);

  // ---- schedule: flags, or on --resume the saved values unless a flag overrides them ----
  nlohmann::json saved_flags = resume ? read_trainer_state(out).value("flags", nlohmann::json::object()) : nlohmann::json::object();
  auto pick = [&](const char* flag, const char* key, auto dflt) {
    using T = decltype(dflt);
    if (a.count(flag) || !saved_flags.contains(key)) return a.count(flag) ? a[flag].as<T>() : dflt;
    return saved_flags[key].get<T>();
  };
  const int B = pick("batch-pairs", "batch_pairs", a["batch-pairs"].as<int>());
  if (B < 1) throw UsageError("--batch-pairs must be ≥ 1");
  const long steps_per_epoch = (static_cast<long>(train.size()) + B - 1) / B;
  const int from_epochs = static_cast<int>(std::ceil(a["epochs"].as<double>() * steps_per_epoch));
  const int total = a.count("steps") ? a["steps"].as<int>() : a.count("epochs") ? from_epochs
                                                                                 : pick("steps", "total_steps", from_epochs);
  if (total < 1) throw UsageError("nothing to do: --steps/--epochs give 0 steps");
  OptimConfig oc;
  oc.lr = pick("lr", "lr", a["lr"].as<float>());
  oc.min_lr_ratio = pick("min-lr-ratio", "min_lr_ratio", a["min-lr-ratio"].as<float>());
  oc.warmup = pick("warmup", "warmup", std::max(1, total / 20));
  oc.total_steps = total;
  oc.weight_decay = pick("weight-decay", "weight_decay", a["weight-decay"].as<float>());
  oc.clip = pick("clip", "clip", a["clip"].as<float>());
  const float center_coef = pick("center-coef", "center_coef", a["center-coef"].as<float>());
  const float margin = pick("margin", "margin", a["margin"].as<float>());
  for (auto& p : train) p.margin += margin;
  const int eval_every = a.count("eval-every") ? a["eval-every"].as<int>() : std::max(1, total / 10);
  const int save_every = a.count("save-every") ? a["save-every"].as<int>() : eval_every;
  const int log_every = std::max(1, a["log-every"].as<int>());

  // ---- model ----
  uint64_t seed = a["seed"].as<uint64_t>();
  auto be = make_backend(a["device"].as<std::string>(), a["threads"].as<int>());
  Model model(cfg, *be);
  AdamW opt(model, oc);
  int step = 0, epoch = 0;
  long pos = 0;  // pairs consumed in the current epoch
  double best_valid = -1;
  if (resume) {
    state = load_checkpoint(out, model, opt);
    step = state.at("step").get<int>();
    seed = state.value("seed", seed);
    epoch = state.value("epoch", 0);
    pos = state.value("epoch_pos", 0L);
    best_valid = state.value("best_valid_acc", -1.0);
    std::fprintf(stderr, "resumed %s at step %d/%d\n", out.c_str(), step, total);
  } else {
    model.init(seed);
  }
  BTObjective obj(model, center_coef);
  int length_head = -1;
  for (int h = 0; h < cfg.n_heads_out; ++h)
    if (cfg.head_names[h] == "length" && cfg.head_weights[h] == 0.0f) length_head = h;
  const float length_lambda = pick("length-lambda", "length_lambda", a["length-lambda"].as<float>());
  if (length_head >= 0) obj.set_length_debias(length_head, length_lambda);
  MetricsLog metrics((fs::path(out) / "metrics.jsonl").string(), resume ? step : -1);
  std::fprintf(stderr, "model: %zu parameters (d %d, L %d, heads %d, d_ff %d, seq %d, vocab %d) on %s\n",
               model.num_params(), cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.max_seq_len, cfg.vocab_size,
               be->name().c_str());
  std::fprintf(stderr, "training: %zu pairs, %d steps of %d pairs (%.2f epochs), lr %g, warmup %d\n", train.size(), total,
               B, static_cast<double>(total) / steps_per_epoch, oc.lr, oc.warmup);

  nlohmann::json flags = {{"train", a["train"].as<std::string>()}, {"batch_pairs", B}, {"total_steps", total},
                          {"lr", oc.lr}, {"min_lr_ratio", oc.min_lr_ratio}, {"warmup", oc.warmup},
                          {"weight_decay", oc.weight_decay}, {"clip", oc.clip}, {"center_coef", center_coef},
                          {"margin", margin}, {"seed", seed}, {"length_lambda", length_lambda}};
  auto save = [&](const char* why) {
    nlohmann::json st = {{"step", step}, {"epoch", epoch}, {"epoch_pos", pos}, {"seed", seed},
                         {"best_valid_acc", best_valid}, {"flags", flags}, {"saved_because", why}};
    save_checkpoint(out, model, opt, st);
  };
  auto validate = [&](nlohmann::json& rec) {
    if (valid.empty()) return;
    PairScores s = score_pairs(obj, cfg, valid, a["eval-batch-pairs"].as<int>());
    rec["valid_loss"] = s.bt_loss;
    rec["valid_acc"] = s.accuracy();
    rec["valid_pairs"] = valid.size();
    best_valid = std::max(best_valid, s.accuracy());
  };

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::vector<size_t> order = epoch_order(train.size(), train, seed, epoch, B);
  TokenBatch batch;
  std::vector<PairTarget> targets;
  std::vector<float> lengths;
  Progress progress("step", total);
  double win_loss = 0, win_tokens = 0, win_t0 = now_seconds();
  int win_correct = 0, win_decided = 0, win_steps = 0;
  while (step < total && !g_stop) {
    if (pos >= static_cast<long>(train.size())) {
      ++epoch, pos = 0;
      order = epoch_order(train.size(), train, seed, epoch, B);
    }
    const size_t e = std::min(train.size(), static_cast<size_t>(pos) + B);
    build_batch(train, order, pos, e, &batch, &targets, &lengths);
    StepStats s = obj.train_step(opt, batch, targets, &lengths);
    pos = static_cast<long>(e);
    ++step;
    win_loss += s.loss.loss, win_tokens += batch.n_tokens(), ++win_steps;
    win_correct += s.loss.n_correct, win_decided += s.loss.n_decided;
    if (!std::isfinite(s.loss.loss)) throw std::runtime_error("loss became non-finite at step " + std::to_string(step));

    const bool log_now = step % log_every == 0 || step == total;
    const bool eval_now = step % eval_every == 0 || step == total;
    if (log_now || eval_now) {
      const double dt = now_seconds() - win_t0;
      nlohmann::json rec = {{"step", step}, {"epoch", epoch + static_cast<double>(pos) / train.size()},
                            {"loss", win_loss / win_steps},
                            {"acc", win_decided ? static_cast<double>(win_correct) / win_decided : 0.0},
                            {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"tokens_per_s", win_tokens / dt}};
      char line[200];
      std::snprintf(line, sizeof line, "loss %.4f  acc %.3f  lr %.2e  |g| %.3f  %.0f tok/s", win_loss / win_steps,
                    rec["acc"].get<double>(), s.lr, s.grad_norm, win_tokens / dt);
      if (eval_now) {
        validate(rec);
        if (rec.contains("valid_acc")) {
          progress.finish();
          std::fprintf(stderr, "step %d/%d  valid_loss %.4f  valid_acc %.4f\n", step, total,
                       rec["valid_loss"].get<double>(), rec["valid_acc"].get<double>());
        }
      }
      metrics.write(rec);
      progress.update(step, line, true);
      win_loss = win_tokens = 0, win_correct = win_decided = win_steps = 0, win_t0 = now_seconds();
    }
    if (step % save_every == 0 || step == total) save(step == total ? "final" : "periodic");
  }
  progress.finish();
  if (g_stop) {
    save("interrupted");
    std::fprintf(stderr, "interrupted at step %d/%d: checkpoint saved in %s (resume with --resume)\n", step, total,
                 out.c_str());
    return 130;
  }
  std::fprintf(stderr, "done: %d steps; run directory %s\n", step, out.c_str());
  return 0;
}

CAIRN_COMMAND("train", "train (or resume) a reward model on JSONL preference pairs", run);

}  // namespace
}  // namespace cairn::cli
