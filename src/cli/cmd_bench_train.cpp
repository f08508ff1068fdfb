// `cairn bench train`: training-step throughput on synthetic token batches (docs/cli.md#bench-train). Reports
// tokens/s (no padding exists: sequences are packed), median ms/step, achieved GFLOP/s (convention
// in include/cairn/flops.h), the machine's SGEMM GFLOP/s measured in the same run, peak RSS, and
// where the time goes (per-op profile from one extra profiled pass). --prefix-share: pairs whose two
// sides share a prompt of --prompt-frac of their tokens, timed packed apart and packed as [prompt |
// chosen | rejected], the two alternating step by step in the same process (pairs/s and tokens of
// unshared work per second, side by side).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include <cxxopts.hpp>

#include "cairn/backend.h"
#include "cairn/errors.h"
#include "cairn/flops.h"
#include "cairn/objective.h"
#include "cli/command.h"
#include "bench/probes/probes.h"
#include "cairn/pretrained.h"
#include "cli/common.h"
#include "util/rng.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Training-step throughput of the reward model on synthetic token batches.");
  o.add_options()
    ("preset", "model preset: tiny|small|base", cxxopts::value<std::string>()->default_value("small"))
    ("batch-pairs", "preference pairs per step (2 sequences each)", cxxopts::value<int>()->default_value("8"))
    ("seq-len", "tokens per sequence (≤ 0: the preset's max_seq_len)", cxxopts::value<int>()->default_value("256"))
    ("lengths", "fixed (every sequence seq-len long) or uniform (uniform in [seq-len/4, seq-len])",
     cxxopts::value<std::string>()->default_value("fixed"))
    ("vocab-size", "vocabulary size", cxxopts::value<int>()->default_value("8192"))
    ("steps", "timed steps", cxxopts::value<int>()->default_value("10"))
    ("warmup", "untimed warm-up steps", cxxopts::value<int>()->default_value("2"))
    ("seed", "random seed", cxxopts::value<uint64_t>()->default_value("1"))
    ("init", "benchmark a pretrained model instead (.gguf or Hugging Face directory, as train --init)",
     cxxopts::value<std::string>())
    ("arch", "gpt2|llama (presets)", cxxopts::value<std::string>()->default_value("gpt2"))
    ("freeze-layers", "train only the blocks above the lowest N", cxxopts::value<int>()->default_value("0"))
    ("prefix-share", "pairs share a prompt: time them unshared, then with the prompt computed once")
    ("prompt-frac", "with --prefix-share: the prompt's share of each sequence's tokens",
     cxxopts::value<double>()->default_value("0.5"))
    ("no-sgemm", "skip the GEMM ceiling probes (SGEMM; bf16 with --cpu-math bf16)")
    ("json", "print one JSON object instead of the table")
    ("h,help", "show this help");
  add_backend_options(o);
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << "\nFLOPs: executed work, and the 6N convention (6·linear-layer parameters per token + causal\n"
                 "attention 3·2·T²·C per layer and sequence); see include/cairn/flops.h.\n";
    return 0;
  }
  ModelConfig cfg;
  std::vector<float> init;  // imported weights (--init)
  if (a.count("init")) {
    PretrainedModel pre = load_pretrained(a["init"].as<std::string>(), ModelConfig(), 0, a["seed"].as<uint64_t>());
    cfg = pre.cfg;
    init = std::move(pre.params);
  } else {
    try {
      cfg = preset_config(a["preset"].as<std::string>());
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    cfg.vocab_size = a["vocab-size"].as<int>();
    cfg.arch = a["arch"].as<std::string>();
  }
  const int P = a["batch-pairs"].as<int>(), steps = a["steps"].as<int>(), warmup = a["warmup"].as<int>();
  int T = a["seq-len"].as<int>();
  if (T <= 0) T = cfg.max_seq_len;
  if (init.empty()) cfg.max_seq_len = std::max(cfg.max_seq_len, T);
  else if (T > cfg.max_seq_len) throw UsageError("--seq-len exceeds the model's context");
  const std::string lengths = a["lengths"].as<std::string>();
  if (P < 1 || steps < 1 || warmup < 0 || T < 2) throw UsageError("--batch-pairs, --steps, --seq-len must be positive");
  if (lengths != "fixed" && lengths != "uniform") throw UsageError("--lengths must be fixed or uniform");
  const bool share = a.count("prefix-share") > 0;
  const double prompt_frac = a["prompt-frac"].as<double>();
  if (!(prompt_frac >= 0 && prompt_frac < 1)) throw UsageError("--prompt-frac must be in [0, 1)");

  const BackendOptions bo = backend_options(a);
  auto be = make_backend(bo);
  Model model(cfg, *be);
  if (init.empty()) model.init(a["seed"].as<uint64_t>());
  else model.set_params(init.data());
  model.set_frozen_layers(a["freeze-layers"].as<int>());
  OptimConfig oc;
  oc.total_steps = warmup + steps + 1;
  AdamW opt(model, oc);
  BTObjective obj(model);

  // One fixed batch (the data path is not what is measured). With --prefix-share the two sides of
  // a pair begin with the same prompt (prompt_frac of the longer side), then differ.
  Rng rng(a["seed"].as<uint64_t>() + 1);
  TokenBatch batch, shared;
  batch.clear(), shared.clear();
  std::vector<PairTarget> pairs;
  std::vector<int32_t> lens;
  auto draw_len = [&] { return std::max(2, lengths == "fixed" ? T : T / 4 + static_cast<int>(rng.below(T - T / 4 + 1))); };
  auto token = [&] { return 3 + static_cast<int32_t>(rng.below(cfg.vocab_size - 3)); };
  for (int i = 0; i < P; ++i) {
    std::vector<int32_t> side[2];
    for (auto& seq : side) {
      seq.resize(draw_len());
      for (auto& t : seq) t = token();
    }
    if (share) {
      const size_t prompt = std::min(static_cast<size_t>(prompt_frac * std::max(side[0].size(), side[1].size())),
                                     std::min(side[0].size(), side[1].size()) - 1);
      std::copy(side[0].begin(), side[0].begin() + prompt, side[1].begin());
      if (side[1][prompt] == side[0][prompt]) side[1][prompt] = side[0][prompt] == 3 ? 4 : 3;  // the answers differ
    }
    for (auto& seq : side) {
      seq.front() = cfg.bos_id, seq.back() = cfg.eos_id;
      batch.add(seq);
      lens.push_back(static_cast<int32_t>(seq.size()));
    }
    shared.add_shared({&side[0], &side[1]});
    pairs.push_back({2 * i, 2 * i + 1});
  }

  auto time_step = [&](const TokenBatch& b) {
    be->synchronize();
    const double t0 = now_seconds();
    obj.train_step(opt, b, pairs);
    be->synchronize();
    return now_seconds() - t0;
  };
  // With --prefix-share the unshared and shared steps alternate, so load on a noisy machine hits both.
  for (int s = 0; s < warmup; ++s) {
    obj.train_step(opt, batch, pairs);
    if (share) obj.train_step(opt, shared, pairs);
  }
  std::vector<double> times, shared_times;
  for (int s = 0; s < steps; ++s) {
    times.push_back(time_step(batch));
    if (share) shared_times.push_back(time_step(shared));
  }
  be->set_profiling(true);
  obj.train_step(opt, batch, pairs);
  auto profile = be->op_profile();
  be->set_profiling(false);

  const double med = median(times), tokens = batch.n_tokens();
  const double flops = executed_step_flops(cfg, lens, model.frozen_layers()), gflops = flops / med / 1e9;
  const double model_flops = model_step_flops(cfg, lens);
  const bool cpu = a["device"].as<std::string>() == "cpu";
  const double sgemm = (cpu && !a.count("no-sgemm")) ? cpu_sgemm_gflops(threads_option(a)) : 0.0;
  // --cpu-math bf16: the same GEMM on bf16 operands (oneDNN), the ceiling of that run
  const bool cpu_bf16 = cpu && bo.cpu_math == "bf16";
  const double cpu_bf16_peak =
      (cpu_bf16 && !a.count("no-sgemm")) ? cpu_sgemm_gflops(threads_option(a), 2048, 1024, 1024, 5, true) : 0.0;
  // TFLOP/s of a dense bf16 cuBLAS GEMM on this device, measured here
  const double gpu_peak = (!cpu && !a.count("no-sgemm")) ? cuda_bf16_gemm_tflops() : 0.0;
  double prof_total = 0;
  for (auto& [k, v] : profile) prof_total += v;

  nlohmann::json j = {
      {"bench", "train"}, {"device", be->name()},
      {"preset", a.count("init") ? a["init"].as<std::string>() : a["preset"].as<std::string>()}, {"arch", cfg.arch},
      {"n_kv_heads", cfg.kv_heads()}, {"frozen_layers", model.frozen_layers()},
      {"d_model", cfg.d_model}, {"n_layers", cfg.n_layers}, {"n_heads", cfg.n_heads}, {"d_ff", cfg.d_ff},
      {"vocab_size", cfg.vocab_size}, {"batch_pairs", P}, {"seq_len", T}, {"lengths", lengths},
      {"tokens_per_step", tokens}, {"steps", steps}, {"ms_per_step_median", med * 1e3},
      {"ms_per_step_min", *std::min_element(times.begin(), times.end()) * 1e3},
      {"tokens_per_s", tokens / med}, {"gflop_per_step", flops / 1e9}, {"gflops", gflops},
      {"model_gflop_per_step_6n", model_flops / 1e9}, {"model_gflops_6n", model_flops / med / 1e9},
      {"sgemm_gflops", sgemm}, {"fraction_of_sgemm", sgemm > 0 ? gflops / sgemm : 0.0},
      {"bf16_gemm_tflops", gpu_peak}, {"fraction_of_bf16_gemm", gpu_peak > 0 ? gflops / 1e3 / gpu_peak : 0.0},
      {"cpu_bf16_gemm_gflops", cpu_bf16_peak},
      {"fraction_of_cpu_bf16_gemm", cpu_bf16_peak > 0 ? gflops / cpu_bf16_peak : 0.0},
      {"peak_rss_mib", peak_rss_mib()}, {"params", model.num_params()}, {"matmul_params", matmul_params(cfg)},
      {"flop_convention", "gflops: executed (last block pruned to EOS rows); model_gflops_6n: 6*matmul_params per token + causal attention 3*2*T^2*C per layer per sequence"}};
  nlohmann::json pj = nlohmann::json::object();
  for (auto& [k, v] : profile) pj[k] = {{"ms", v}, {"share", prof_total > 0 ? v / prof_total : 0.0}};
  j["op_profile"] = pj;
  j["pairs_per_s"] = P / med;
  if (share) {  // the same pairs, each prompt computed once (its steps alternated with the unshared ones)
    const double ms = median(shared_times);
    j["prefix_share"] = {{"prompt_frac", prompt_frac},
                         {"sequence_tokens_per_step", shared.sequence_tokens()},
                         {"computed_tokens_per_step", shared.n_tokens()},
                         {"unshared", {{"ms_per_step_median", med * 1e3}, {"pairs_per_s", P / med},
                                       {"sequence_tokens_per_s", tokens / med}}},
                         {"shared", {{"ms_per_step_median", ms * 1e3}, {"pairs_per_s", P / ms},
                                     {"sequence_tokens_per_s", shared.sequence_tokens() / ms},
                                     {"computed_tokens_per_s", shared.n_tokens() / ms}}},
                         {"speedup", med / ms}};
  }
  const char* wait = std::getenv("OMP_WAIT_POLICY");  // what libgomp ran with (see main.cpp)
  j["omp_wait_policy"] = wait ? wait : "";
  if (a.count("json")) {
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::printf("cairn bench train — %s, preset %s (d %d, L %d, H %d, d_ff %d), %d pairs × seq %d (%s)\n",
              be->name().c_str(), a["preset"].as<std::string>().c_str(), cfg.d_model, cfg.n_layers, cfg.n_heads,
              cfg.d_ff, P, T, lengths.c_str());
  std::printf("  tokens/step      %10.0f\n  ms/step (median)%10.1f   (min %.1f, %d steps)\n  tokens/s         %10.0f\n",
              tokens, med * 1e3, j["ms_per_step_min"].get<double>(), steps, tokens / med);
  std::printf("  GFLOP/step       %10.2f   executed (6N convention: %.2f)\n  GFLOP/s          %10.1f   executed (6N convention: %.1f)\n",
              flops / 1e9, model_flops / 1e9, gflops, model_flops / med / 1e9);
  if (sgemm > 0) std::printf("  SGEMM GFLOP/s    %10.1f   (model reaches %.0f%% of it)\n", sgemm, 100 * gflops / sgemm);
  if (cpu_bf16_peak > 0)
    std::printf("  bf16 GEMM GFLOP/s%10.1f   (oneDNN, this CPU; model reaches %.0f%% of it)\n", cpu_bf16_peak,
                100 * gflops / cpu_bf16_peak);
  if (gpu_peak > 0)
    std::printf("  bf16 GEMM TFLOP/s%10.1f   (cuBLAS, this device; model reaches %.1f%% of it)\n", gpu_peak,
                100 * gflops / 1e3 / gpu_peak);
  if (share) {
    const auto& ps = j["prefix_share"];
    std::printf("  prefix sharing   prompt %.0f%% of each side: %ld of %ld tokens computed per step\n", 100 * prompt_frac,
                ps["computed_tokens_per_step"].get<long>(), ps["sequence_tokens_per_step"].get<long>());
    std::printf("    unshared       %10.1f pairs/s  %10.0f tokens/s (median %.1f ms/step)\n",
                ps["unshared"]["pairs_per_s"].get<double>(), ps["unshared"]["sequence_tokens_per_s"].get<double>(), med * 1e3);
    std::printf("    shared         %10.1f pairs/s  %10.0f tokens/s of unshared work (median %.1f ms/step): %.2fx\n",
                ps["shared"]["pairs_per_s"].get<double>(), ps["shared"]["sequence_tokens_per_s"].get<double>(),
                ps["shared"]["ms_per_step_median"].get<double>(), ps["speedup"].get<double>());
  }
  std::printf("  peak RSS         %10.0f MiB\n", peak_rss_mib());
  if (!profile.empty()) {
    std::printf("  where the time goes (one profiled step):\n");
    std::sort(profile.begin(), profile.end(), [](auto& x, auto& y) { return x.second > y.second; });
    for (auto& [k, v] : profile) std::printf("    %-15s %8.1f ms  %5.1f%%\n", k.c_str(), v, 100 * v / prof_total);
  }
  return 0;
}

CAIRN_COMMAND("bench train", "training-step throughput on synthetic tokens", run);

}  // namespace
}  // namespace cairn::cli
