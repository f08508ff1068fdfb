// `cairn train`: trains (or resumes) a Bradley–Terry reward model on JSONL preference pairs and
// writes the run directory (docs/run-directory.md). Flow: read + render pairs → tokenizer (given, resumed, or
// trained into the run dir) → tokenize once (truncation counted) → steps over seeded, length-bucketed
// epochs → metrics.jsonl every --log-every steps, validation every --eval-every steps, checkpoint
// every --save-every steps, at the end and on Ctrl-C (which then exits with 130).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "cairn/backend.h"
#include "cairn/checkpoint.h"
#include "cairn/data.h"
#include "cairn/dist.h"
#include "cairn/io.h"
#include "cairn/errors.h"
#include "cairn/tokenizer.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/run_model.h"
#include "cli/interrupt.h"
#include "cairn/chat_template.h"
#include "cairn/pretrained.h"
#include "train/trainer.h"
#include "util/timing.h"

namespace fs = std::filesystem;

namespace cairn::cli {
namespace {

// The run's settings. A flag given on the command line wins; on --resume a flag not given takes the
// value saved in trainer_state.json; otherwise its default. --steps/--epochs: --steps if given, else
// --epochs if given, else the saved step count, else one epoch. Cadences are never saved.
TrainSettings resolve_settings(const cxxopts::ParseResult& a, const std::string& out, bool resume, size_t n_train) {
  const nlohmann::json saved =
      resume ? read_trainer_state(out).value("flags", nlohmann::json::object()) : nlohmann::json::object();
  auto pick = [&](const char* flag, const char* key, auto dflt) {
    using T = decltype(dflt);
    if (a.count(flag) || !saved.contains(key)) return a.count(flag) ? a[flag].as<T>() : dflt;
    return saved[key].get<T>();
  };
  TrainSettings ts;
  ts.out_dir = out;
  ts.batch_pairs = pick("batch-pairs", "batch_pairs", a["batch-pairs"].as<int>());
  if (ts.batch_pairs < 1) throw UsageError("--batch-pairs must be ≥ 1");
  const long steps_per_epoch = (static_cast<long>(n_train) + ts.batch_pairs - 1) / ts.batch_pairs;
  const int from_epochs = static_cast<int>(std::ceil(a["epochs"].as<double>() * steps_per_epoch));
  ts.total_steps = a.count("steps")    ? a["steps"].as<int>()
                   : a.count("epochs") ? from_epochs
                                       : pick("steps", "total_steps", from_epochs);
  if (ts.total_steps < 1) throw UsageError("nothing to do: --steps/--epochs give 0 steps");
  OptimConfig& oc = ts.optim;
  oc.lr = pick("lr", "lr", a["lr"].as<float>());
  oc.min_lr_ratio = pick("min-lr-ratio", "min_lr_ratio", a["min-lr-ratio"].as<float>());
  oc.warmup = pick("warmup", "warmup", std::max(1, ts.total_steps / 20));
  oc.total_steps = ts.total_steps;
  oc.weight_decay = pick("weight-decay", "weight_decay", a["weight-decay"].as<float>());
  oc.clip = pick("clip", "clip", a["clip"].as<float>());
  ts.center_coef = pick("center-coef", "center_coef", a["center-coef"].as<float>());
  const float margin = pick("margin", "margin", a["margin"].as<float>());
  ts.length_lambda = pick("length-lambda", "length_lambda", a["length-lambda"].as<float>());
  const int freeze = pick("freeze-layers", "freeze_layers", a["freeze-layers"].as<int>());
  if (freeze < 0) throw UsageError("--freeze-layers must be ≥ 0");
  auto check = [](bool ok, const char* what) {
    if (!ok) throw UsageError(what);
  };
  auto finite = [](float x) { return std::isfinite(x); };
  check(finite(oc.lr) && oc.lr > 0, "--lr must be a finite number > 0");
  check(oc.min_lr_ratio >= 0 && oc.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1]");
  check(oc.warmup >= 0, "--warmup must be ≥ 0");
  check(finite(oc.weight_decay) && oc.weight_decay >= 0, "--weight-decay must be a finite number ≥ 0");
  check(finite(oc.clip) && oc.clip >= 0, "--clip must be a finite number ≥ 0 (0: no clipping)");
  check(finite(ts.center_coef) && ts.center_coef >= 0, "--center-coef must be a finite number ≥ 0");
  check(finite(ts.length_lambda) && ts.length_lambda >= 0, "--length-lambda must be a finite number ≥ 0");
  check(finite(margin), "--margin must be a finite number");
  ts.seed = a["seed"].as<uint64_t>();
  ts.eval_every = a.count("eval-every") ? a["eval-every"].as<int>() : std::max(1, ts.total_steps / 10);
  ts.save_every = a.count("save-every") ? a["save-every"].as<int>() : ts.eval_every;
  ts.log_every = std::max(1, a["log-every"].as<int>());
  ts.eval_batch_pairs = a["eval-batch-pairs"].as<int>();
  if (ts.eval_every < 1 || ts.save_every < 1 || ts.eval_batch_pairs < 1)
    throw UsageError("--eval-every, --save-every and --eval-batch-pairs must be ≥ 1");
  ts.flags = {{"train", a["train"].as<std::string>()}, {"batch_pairs", ts.batch_pairs}, {"total_steps", ts.total_steps},
              {"lr", oc.lr}, {"min_lr_ratio", oc.min_lr_ratio}, {"warmup", oc.warmup},
              {"weight_decay", oc.weight_decay}, {"clip", oc.clip}, {"center_coef", ts.center_coef},
              {"margin", margin}, {"seed", ts.seed}, {"length_lambda", ts.length_lambda}, {"freeze_layers", freeze}};
  return ts;
}

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Train (or resume) a Bradley–Terry reward model on JSONL preference pairs.");
  o.add_options("data")
    ("train", "training pairs (.jsonl or .jsonl.gz)", cxxopts::value<std::string>())
    ("valid", "validation pairs", cxxopts::value<std::string>())
    ("out", "run directory (created; see docs/run-directory.md)", cxxopts::value<std::string>())
    ("tokenizer", "SentencePiece model; default: the run dir's, else one is trained", cxxopts::value<std::string>())
    ("init", "start from a pretrained model: a .gguf file or a Hugging Face directory (its tokenizer comes along)",
     cxxopts::value<std::string>())
    ("chat-template", "auto|plain|chatml|llama3: how conversations become text (auto: the --init model's own)",
     cxxopts::value<std::string>()->default_value("auto"))
    ("skip-bad", "skip malformed lines (counted) instead of stopping with exit 3")
    ("constitution", "constitution JSON: one reward head per principle", cxxopts::value<std::string>())
    ("length-head", "length debiasing: a 'length' head absorbs the length signal and is dropped at scoring")
    ("length-lambda", "weight of the length decorrelation penalty", cxxopts::value<float>()->default_value("1.0"));
  o.add_options("model")
    ("preset", "tiny|small|base", cxxopts::value<std::string>()->default_value("tiny"))
    ("arch", "gpt2|llama (from scratch; --init takes the model's)", cxxopts::value<std::string>()->default_value("gpt2"))
    ("n-kv-heads", "llama: key/value heads (grouped-query attention)", cxxopts::value<int>())
    ("freeze-layers", "train only the blocks above the lowest N (and the head); 0: all",
     cxxopts::value<int>()->default_value("0"))
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
  add_backend_options(o);
  add_prefix_sharing_option(o);
  o.add_options("run")
    ("resume", "continue from the run directory's last checkpoint")
    ("no-overlap", "data parallel: sum the gradients after the backward pass, not layer by layer during it")
    ("log-every", "steps between metrics.jsonl lines", cxxopts::value<int>()->default_value("10"))
    ("eval-every", "steps between validations (default: 10 per run)", cxxopts::value<int>())
    ("save-every", "steps between checkpoints (default: at each validation)", cxxopts::value<int>())
    ("eval-batch-pairs", "pairs per validation forward", cxxopts::value<int>()->default_value("32"))
    ("valid-max-pairs", "validate on a fixed sample of this many pairs spread over prompts (0: all)",
     cxxopts::value<long>()->default_value("2000"))
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << "\nExit codes: 0 done, 1 failure, 2 usage, 3 bad input, 130 interrupted (checkpoint saved).\n";
    return 0;
  }
  for (const char* req : {"train", "out"})
    if (!a.count(req)) throw UsageError(std::string("--") + req + " is required");
  const std::string out = a["out"].as<std::string>();
  {  // no input may be a file train writes (or the directory it writes into, for a --init directory);
     // --tokenizer is copied to tokenizer.model (a copy onto itself changes nothing) and ignored on resume
    std::vector<std::string> inputs;
    for (const char* f : {"train", "valid", "init", "constitution"})
      if (a.count(f)) inputs.push_back(a[f].as<std::string>());
    for (const std::string& f : run_dir_files()) check_output_not_input((fs::path(out) / f).string(), inputs);
    check_output_not_input(out, inputs);
  }
  const bool resume = a.count("resume") > 0;
  const std::string before = resume ? "interrupted before training resumed: the checkpoint in " + out + " is unchanged"
                                    : "interrupted before training started: no checkpoint written";
  set_interrupt_message(before.c_str());
  if (a["valid-max-pairs"].as<long>() < 0) throw UsageError("--valid-max-pairs must be ≥ 0");
  const bool skip_bad = a.count("skip-bad") > 0;
  if (std::error_code ec; fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw UsageError("--out " + out + " exists and is not a directory");
  if (resume && !fs::exists(fs::path(out) / "optimizer.safetensors"))
    throw UsageError("--resume: no checkpoint in " + out);
  if (!resume && fs::exists(fs::path(out) / "optimizer.safetensors"))
    throw UsageError(out + " already holds a run; pass --resume to continue it or choose another --out");
  if (!resume) {  // a bad constitution fails before any data is read or a tokenizer trained
    ModelConfig probe;
    apply_constitution(a, &probe);
  }
  // A run directory this command creates is removed again when setting up fails (bad or empty data,
  // tokenizer training): only a run that starts training leaves a directory behind.
  fs::path created;                      // the topmost directory of `out` that does not exist yet
  std::vector<std::string> created_dirs;  // every one this command creates, deepest first
  for (fs::path p = fs::absolute(out); !fs::exists(p) && p != p.parent_path(); p = p.parent_path())
    created = p, created_dirs.push_back(p.string());
  struct RemoveOnFailure {
    fs::path dir;
    ~RemoveOnFailure() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  };
  // Data parallel: rank 0 alone writes the run directory; the others read what it wrote (one
  // filesystem for all ranks, as for any multi-node trainer), after the barrier below.
  const dist::Comm& world = dist::world();
  RemoveOnFailure setup_guard{world.root() ? created : fs::path()};
  if (world.root() && !created.empty()) {  // and so does an interrupt before the first step
    std::vector<std::string> files;
    for (const std::string& f : run_dir_files()) files.push_back((fs::path(out) / f).string());
    set_interrupt_cleanup(files, created_dirs);
    set_interrupt_message("interrupted before training started: no checkpoint written, the new run directory removed");
  }
  if (world.root()) {
    fs::create_directories(out);
    for (const std::string& f : remove_stale_run_temp_files(out))
      std::fprintf(stderr, "removed %s, a temp file left in %s by a killed run\n", f.c_str(), out.c_str());
  }

  // ---- model config and tokenizer: resumed, imported (--init), or from flags ----
  const std::string train_path = a["train"].as<std::string>();
  ModelConfig cfg;
  std::unique_ptr<Tokenizer> tok_ptr;
  std::vector<float> init_params;  // the imported weights (--init)
  auto reward_heads = [&] {
    ModelConfig h;
    apply_constitution(a, &h);
    if (a.count("length-head")) {
      for (const std::string& n : h.head_names)
        if (n == "length")
          throw UsageError("--length-head adds a head named \"length\", and the constitution has a principle of that name; rename it");
      h.head_names.push_back("length");
      h.head_weights.push_back(0.0f);  // scoring ignores it
      h.n_heads_out += 1;
    }
    return h;
  };
  if (resume) {
    cfg = read_config(out);
    tok_ptr = load_run_tokenizer_for(out, cfg);
  } else if (a.count("init")) {
    const std::string init = a["init"].as<std::string>();
    std::fprintf(stderr, "importing %s\n", init.c_str());
    const double t0 = now_seconds();
    PretrainedModel pre = load_pretrained(init, reward_heads(), a.count("max-seq-len") ? a["max-seq-len"].as<int>() : 0,
                                          a["seed"].as<uint64_t>());
    std::fprintf(stderr, "imported %s in %.1fs (peak RSS %.0f MiB)\n", pre.description.c_str(), now_seconds() - t0,
                 peak_rss_mib());
    cfg = pre.cfg;
    const std::string name = a["chat-template"].as<std::string>();
    try {
      const ChatTemplate t = name == "auto" ? (pre.chat_template.empty() ? ChatTemplate() : ChatTemplate::detect(pre.chat_template))
                                            : ChatTemplate::by_name(name, name == "chatml" && !pre.chat_template.empty()
                                                                              ? ChatTemplate::detect(pre.chat_template).default_system()
                                                                              : "");
      cfg.chat_template = t.name(), cfg.chat_system = t.default_system();
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string(e.what()) + " (--chat-template plain|chatml|llama3 chooses one)");
    }
    tok_ptr = std::move(pre.tokenizer);
    init_params = std::move(pre.params);
  } else {
    const std::string tok_path = (fs::path(out) / "tokenizer.model").string();
    if (!world.root()) {
      // rank 0 copies or trains the tokenizer into the run directory
    } else if (a.count("tokenizer")) {
      load_sentencepiece(a["tokenizer"].as<std::string>());  // a bad one is named as given, not as its copy
      copy_file_atomic(a["tokenizer"].as<std::string>(), tok_path);
    } else if (!fs::exists(tok_path)) {
      const int asked = a["vocab-size"].as<int>();
      std::fprintf(stderr, "training a tokenizer (vocab %d) on %s\n", asked, train_path.c_str());
      const int vocab = train_tokenizer({train_path}, tok_path, asked, "bpe", kTokenizerMaxSentences, true);
      if (vocab < asked)
        std::fprintf(stderr, "note: the training text supports only %d pieces; the tokenizer has that many instead of --vocab-size %d\n",
                     vocab, asked);
    }
    world.barrier();
    tok_ptr = load_sentencepiece(tok_path);
    cfg = model_config_from_flags(a, *tok_ptr);
    const ModelConfig h = reward_heads();
    cfg.n_heads_out = h.n_heads_out, cfg.head_names = h.head_names, cfg.head_weights = h.head_weights;
    if (a["chat-template"].as<std::string>() != "auto") {
      try {
        cfg.chat_template = ChatTemplate::by_name(a["chat-template"].as<std::string>()).name();
      } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
      }
    }
  }
  const Tokenizer& tok = *tok_ptr;
  if (!resume && world.root()) tok.save((fs::path(out) / tok.file_name()).string());
  const ChatTemplate chat = ChatTemplate::by_name(cfg.chat_template, cfg.chat_system);
  if (!chat.plain()) std::fprintf(stderr, "pairs render with the %s chat template\n", chat.name().c_str());

  // ---- data ----
  ReadStats train_stats, valid_stats;
  std::vector<Pair> train_raw = read_pairs(train_path, skip_bad, &train_stats, chat);
  std::vector<Pair> valid_raw;
  size_t valid_all = 0, valid_prompts = 0;
  if (a.count("valid")) {
    valid_raw = read_pairs(a["valid"].as<std::string>(), skip_bad, &valid_stats, chat);
    valid_all = valid_raw.size();
    valid_raw = sample_over_prompts(std::move(valid_raw), a["valid-max-pairs"].as<long>(), &valid_prompts);
  }
  if (train_raw.empty()) throw DataError(train_path, 0, "no usable pairs");
  TokenizeStats trunc;
  const int threads = threads_option(a);
  std::vector<TokenizedPair> train = tokenize_pairs(train_raw, tok, cfg, &trunc, threads);
  std::vector<TokenizedPair> valid = tokenize_pairs(valid_raw, tok, cfg, &trunc, threads);
  report_data(train_path, train_stats, train.size());
  if (a.count("valid")) {
    report_data(a["valid"].as<std::string>(), valid_stats, valid_all);
    if (valid.size() < valid_all)
      std::fprintf(stderr, "validation: a fixed sample of %zu of %zu pairs, spread over %zu prompts (--valid-max-pairs)\n",
                   valid.size(), valid_all, valid_prompts);
  }
  report_tokenize(trunc, cfg);

  // ---- settings: flags, or on --resume the saved values unless a flag overrides them ----
  TrainSettings ts = resolve_settings(a, out, resume, train.size());
  ts.prefix_sharing = use_prefix_sharing(a, train);
  ts.grad_overlap = a.count("no-overlap") == 0;
  for (auto& p : train) p.margin += ts.flags["margin"].get<float>();

  // ---- model and trainer ----
  auto be = make_backend(backend_options(a));
  Model model(cfg, *be);
  if (!init_params.empty()) model.set_params(init_params.data());
  else if (!resume) model.init(a["seed"].as<uint64_t>());
  init_params = {};
  const int freeze = ts.flags["freeze_layers"].get<int>();
  if (freeze > cfg.n_layers) throw UsageError("--freeze-layers " + std::to_string(freeze) + ": the model has " +
                                              std::to_string(cfg.n_layers) + " layers");
  model.set_frozen_layers(freeze);
  if (!resume && world.root()) save_config(out, cfg);  // with the tokenizer: what the first checkpoint needs to resume
  Trainer trainer(ts, model, std::move(train), std::move(valid));
  if (resume) {
    trainer.resume();
    std::fprintf(stderr, "resumed %s at step %d/%d\n", out.c_str(), trainer.progress().step, ts.total_steps);
  }
  const long steps_per_epoch = (static_cast<long>(train_raw.size()) + ts.batch_pairs - 1) / ts.batch_pairs;
  size_t trainable = 0;
  for (const auto& p : model.table().tensors()) trainable += model.trainable(p) ? p.numel : 0;
  std::fprintf(stderr, "model: %s, %zu parameters, %zu trainable (d %d, L %d, heads %d/%d, d_ff %d, seq %d, vocab %d) on %s\n",
               cfg.arch.c_str(), model.num_params(), trainable, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.kv_heads(),
               cfg.d_ff, cfg.max_seq_len, cfg.vocab_size, be->name().c_str());
  std::fprintf(stderr, "training: %zu pairs, %d steps of %d pairs (%.2f epochs), lr %g, warmup %d\n", train_raw.size(),
               ts.total_steps, ts.batch_pairs, static_cast<double>(ts.total_steps) / steps_per_epoch, ts.optim.lr,
               ts.optim.warmup);
  if (world.launched())
    std::fprintf(stderr, "data parallel: %d ranks (%d on this node), %d-%d pairs of each step per rank, gradients %s\n",
                 world.size(), world.local_size(), ts.batch_pairs / world.size(),
                 (ts.batch_pairs + world.size() - 1) / world.size(),
                 ts.grad_overlap ? "summed layer by layer during backward" : "summed after backward");

  setup_guard.dir.clear();  // training starts: the run directory stays, whatever happens next
  clear_interrupt_cleanup();
  const std::atomic<bool>& stop =
      world.launched()
          ? enter_graceful_interrupts("\ninterrupt: every rank stops after the step in flight, then rank 0 saves a checkpoint\n")
          : enter_graceful_interrupts();
  if (trainer.run(stop) == Trainer::Outcome::Interrupted) {
    std::fprintf(stderr, "interrupted at step %d/%d: checkpoint saved in %s (resume with --resume)\n",
                 trainer.progress().step, ts.total_steps, out.c_str());
    return 130;
  }
  std::fprintf(stderr, "done: %d steps; run directory %s\n", trainer.progress().step, out.c_str());
  return 0;
}

CAIRN_COMMAND("train", "train (or resume) a reward model on JSONL preference pairs", run);

}  // namespace
}  // namespace cairn::cli
