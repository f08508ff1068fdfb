// The whole model on the GPU against the same model on the CPU: one training step from the same
// initial weights (rewards, loss, every gradient), a few AdamW steps, for both architecture families
// (gpt2; llama with grouped-query attention, RoPE, RMSNorm, SwiGLU, also with frozen lower blocks),
// learnability of the synthetic task, and run directories that move between devices through the CLI.
// Tolerances (relative L2 over all parameters): fp32 GEMMs 2e-2 and bf16 GEMMs 5e-2 for gradients
// (the attention MMAs are bf16 in both), rewards 1e-2 / 3e-2.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cairn/checkpoint.h"
#include "cairn/dist.h"
#include "cairn/model.h"
#include "cairn/objective.h"
#include "dist/grad_sync.h"
#include "gpu/gpu_util.h"
#include "synthetic_task.h"
#include "test_tmpdir.h"

namespace cairn {
using test::rel_l2;

namespace {
ModelConfig step_config() {
  ModelConfig c;
  c.vocab_size = 97, c.max_seq_len = 256, c.d_model = 128, c.n_layers = 3, c.n_heads = 2, c.d_ff = 320;
  c.n_heads_out = 2;
  c.head_names = {"a", "b"};
  c.head_weights = {0.7f, 0.3f};
  return c;
}

struct StepResult {
  LossStats loss;
  std::vector<float> rewards, grads, params_after;
};

StepResult run_steps(Backend& be, const ModelConfig& cfg, const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                     int adam_steps, int frozen_layers = 0) {
  Model m(cfg, be);
  m.init(5);
  m.set_frozen_layers(frozen_layers);
  BTObjective obj(m, 0.05f);
  StepResult r;
  m.zero_grads();
  r.loss = obj.forward_backward(batch, pairs, &r.rewards);
  r.grads.resize(m.num_params());
  m.get_grads(r.grads.data());
  OptimConfig oc;
  oc.lr = 1e-3f, oc.warmup = 0, oc.total_steps = 100;
  AdamW opt(m, oc);
  for (int s = 0; s < adam_steps; ++s) obj.train_step(opt, batch, pairs);
  r.params_after.resize(m.num_params());
  m.get_params(r.params_after.data());
  return r;
}

TokenBatch step_batch(const ModelConfig& cfg) {
  Rng rng(3);
  TokenBatch batch;
  batch.clear();
  for (int L : {31, 200, 33, 127, 64, 2, 150, 149}) {
    std::vector<int32_t> s(L);
    for (auto& t : s) t = static_cast<int32_t>(rng.below(cfg.vocab_size));
    batch.add(s);
  }
  return batch;
}
const std::vector<PairTarget> kStepPairs = {{0, 1, 1.0f, 0.0f, 1.0f, -1}, {2, 3, 0.8f, 0.1f, 2.0f, 0},
                                            {4, 5, 1.0f, 0.0f, 1.0f, 1}, {6, 7, 0.3f, 0.0f, 0.5f, -1}};

// One training step and 5 AdamW steps on the GPU (fp32 and bf16 GEMMs) against the CPU.
void expect_step_matches_cpu(const ModelConfig& cfg, int frozen_layers, const std::string& what,
                             const TokenBatch& batch, const std::vector<PairTarget>& pairs) {
  auto cpu = make_backend("cpu", 2);
  const StepResult ref = run_steps(*cpu, cfg, batch, pairs, 5, frozen_layers);
  for (CudaMath math : {CudaMath::FP32, CudaMath::BF16}) {
    auto gpu = make_cuda_backend(0, math);
    const StepResult got = run_steps(*gpu, cfg, batch, pairs, 5, frozen_layers);
    const bool bf16 = math == CudaMath::BF16;
    const double e_r = rel_l2(got.rewards, ref.rewards), e_g = rel_l2(got.grads, ref.grads);
    const double e_p = rel_l2(got.params_after, ref.params_after);
    std::printf("%s, %s GEMMs: rewards %.2e  loss %.6f vs %.6f  gradients %.2e  params after 5 AdamW steps %.2e\n",
                what.c_str(), bf16 ? "bf16" : "fp32", e_r, got.loss.loss, ref.loss.loss, e_g, e_p);
    SCOPED_TRACE(what + (bf16 ? ", bf16 GEMMs" : ", fp32 GEMMs"));
    EXPECT_LT(e_r, bf16 ? 3e-2 : 1e-2);
    EXPECT_NEAR(got.loss.loss, ref.loss.loss, (bf16 ? 2e-2 : 5e-3) * std::fabs(ref.loss.loss));
    EXPECT_LT(e_g, bf16 ? 5e-2 : 2e-2);
    // Adam's steps are nearly sign(g)·lr where |g| is tiny, so coordinates whose gradient is ~0 can
    // step either way on either device: the weights agree to a fraction of 5 steps of lr 1e-3.
    EXPECT_LT(e_p, 5e-3);
    // each tensor's gradient, so a wrong small tensor cannot hide in the total
    ParamTable t(cfg);
    for (const ParamInfo& info : t.tensors()) {
      std::vector<float> a(got.grads.begin() + info.offset, got.grads.begin() + info.offset + info.numel);
      std::vector<float> b(ref.grads.begin() + info.offset, ref.grads.begin() + info.offset + info.numel);
      EXPECT_LT(rel_l2(a, b), bf16 ? 1e-1 : 5e-2) << info.name;
    }
  }
}
void expect_step_matches_cpu(const ModelConfig& cfg, int frozen_layers, const std::string& what) {
  expect_step_matches_cpu(cfg, frozen_layers, what, step_batch(cfg), kStepPairs);
}

// Pairs (and a triple) that share their prompt, packed as groups by TokenBatch::add_shared (share
// false: the same sequences one by one): prompts of 1 token, of 150 (more than two attention tiles)
// with a response of a single token, and of 20 with three responses; plain sequences first, between
// and last. The responses differ in their first token, so the shared prefix is exactly the prompt.
TokenBatch shared_batch(const ModelConfig& cfg, bool share) {
  Rng rng(4);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = 3 + static_cast<int32_t>(rng.below(cfg.vocab_size - 3));
    return t;
  };
  TokenBatch batch;
  batch.clear();
  auto group = [&](int prompt, const std::vector<int>& rests, int want) {
    const std::vector<int32_t> p = tokens(prompt);
    std::vector<std::vector<int32_t>> seqs;
    for (size_t k = 0; k < rests.size(); ++k) {
      std::vector<int32_t> s = p, r = tokens(rests[k]);
      r[0] = static_cast<int32_t>(k);  // distinct first response tokens (ids 0, 1, 2 are never drawn above)
      s.insert(s.end(), r.begin(), r.end());
      seqs.push_back(s);
    }
    std::vector<const std::vector<int32_t>*> ptrs;
    for (const auto& s : seqs) ptrs.push_back(&s);
    EXPECT_EQ(batch.add_shared(ptrs, share), share ? want : 0);
  };
  batch.add(tokens(31));
  group(1, {40, 60}, 1);
  group(150, {1, 50}, 150);
  batch.add(tokens(64));
  group(20, {30, 2, 45}, 20);
  batch.add(tokens(2));
  return batch;
}
// Sequences (reward rows): 0 plain | 1, 2 | 3, 4 | 5 plain | 6, 7, 8 | 9 plain
const std::vector<PairTarget> kSharedPairs = {{1, 2, 1.0f, 0.0f, 1.0f, -1}, {4, 3, 0.8f, 0.1f, 2.0f, 0},
                                              {6, 7, 1.0f, 0.0f, 1.0f, 1},  {8, 7, 0.3f, 0.0f, 0.5f, -1},
                                              {0, 9, 1.0f, 0.0f, 1.0f, -1}, {5, 6, 0.9f, 0.0f, 1.0f, 0}};
}  // namespace

TEST(CudaModel, TrainingStepMatchesCpu) {
  CAIRN_REQUIRE_GPU();
  expect_step_matches_cpu(step_config(), 0, "gpt2");
}

// The llama family: RMSNorm, RoPE (θ 10⁴), grouped-query attention (G = 3, 4, 2; and MHA), SwiGLU, no
// biases or learned positions; head sizes 32, 32, 24, 64; once with the lowest block frozen.
TEST(CudaModel, LlamaTrainingStepMatchesCpu) {
  CAIRN_REQUIRE_GPU();
  struct Shape {
    int d_model, n_heads, n_kv_heads, frozen;
  };
  for (const Shape& sh :
       {Shape{192, 6, 2, 0}, Shape{128, 4, 1, 0}, Shape{144, 6, 3, 0}, Shape{128, 2, 2, 0}, Shape{192, 6, 2, 1}}) {
    ModelConfig cfg = step_config();
    cfg.arch = "llama";
    cfg.d_model = sh.d_model, cfg.n_heads = sh.n_heads, cfg.n_kv_heads = sh.n_kv_heads;
    cfg.rope_theta = 10000.0f, cfg.norm_eps = 1e-5f;
    cfg.validate();
    expect_step_matches_cpu(cfg, sh.frozen,
                            "llama C " + std::to_string(sh.d_model) + " NH " + std::to_string(sh.n_heads) + " NKV " +
                                std::to_string(sh.n_kv_heads) + " frozen " + std::to_string(sh.frozen));
  }
}

// Shared-prefix packing (TokenBatch::add_shared) on the CUDA backend: the training step against the
// CPU backend on the same shared batch (rewards, loss, every gradient, 5 AdamW steps; the tolerances
// above), for gpt2 and llama with grouped-query attention; and, independently of the CPU code, the
// shared batch against the same sequences packed one by one, on the GPU (fp32 GEMMs: the rewards and
// gradients of the same sequences, up to the bf16 attention's tiling).
TEST(CudaModel, SharedPrefixTrainingStepMatchesCpu) {
  CAIRN_REQUIRE_GPU();
  ModelConfig llama = step_config();
  llama.arch = "llama";
  llama.d_model = 192, llama.n_heads = 6, llama.n_kv_heads = 2;
  llama.rope_theta = 10000.0f, llama.norm_eps = 1e-5f;
  llama.validate();
  for (const auto& [cfg, name] : {std::pair{step_config(), "gpt2"}, std::pair{llama, "llama NH 6 NKV 2"}}) {
    const TokenBatch shared = shared_batch(cfg, true), plain = shared_batch(cfg, false);
    ASSERT_TRUE(shared.has_prefixes());
    ASSERT_EQ(shared.n_seqs(), plain.n_seqs());
    ASSERT_LT(shared.n_tokens(), plain.n_tokens());
    expect_step_matches_cpu(cfg, 0, std::string(name) + ", shared prefixes", shared, kSharedPairs);

    auto gpu = make_cuda_backend(0, CudaMath::FP32);
    const StepResult s = run_steps(*gpu, cfg, shared, kSharedPairs, 0), u = run_steps(*gpu, cfg, plain, kSharedPairs, 0);
    const double e_r = rel_l2(s.rewards, u.rewards), e_g = rel_l2(s.grads, u.grads);
    std::printf("%s: shared vs unshared packing on the GPU: rewards %.2e  loss %.6f vs %.6f  gradients %.2e\n", name, e_r,
                s.loss.loss, u.loss.loss, e_g);
    EXPECT_LT(e_r, 1e-2) << name;
    EXPECT_NEAR(s.loss.loss, u.loss.loss, 5e-3 * std::fabs(u.loss.loss)) << name;
    EXPECT_LT(e_g, 2e-2) << name;
  }
}

TEST(CudaModel, LearnsSyntheticPreferenceTask) {
  CAIRN_REQUIRE_GPU();
  auto gpu = make_cuda_backend(0);
  double acc = 0;
  test::train_synthetic(*gpu, 400, 7, &acc);
  EXPECT_GE(acc, 0.95) << "held-out accuracy " << acc;
}

namespace {
// The cairn binary: the one built beside this test, or $CAIRN_BINARY (a build copied to a GPU machine).
std::string cairn_binary() {
  const char* env = std::getenv("CAIRN_BINARY");
  return env && *env ? env : CAIRN_BINARY;
}
// Runs a shell command line; *out gets what it printed (stdout and stderr).
int run_shell(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  std::string o;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.append(buf.data(), n);
  const int st = pclose(p);
  if (out) *out = o;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
int run(const std::string& args, std::string* out = nullptr) { return run_shell(cairn_binary() + " " + args, out); }
// n polite/rude pairs over 20 topics (chosen: polite), seeded.
void write_polite_pairs(const std::string& path, int n, uint64_t seed) {
  std::ofstream f(path);
  Rng r(seed);
  for (int i = 0; i < n; ++i) {
    const std::string topic = "topic " + std::to_string(r.below(20));
    f << nlohmann::json({{"prompt", "Tell me about " + topic},
                         {"chosen", "Thank you for asking, here is a careful answer about " + topic + "."},
                         {"rejected", "Whatever, read about " + topic + " yourself."}})
                .dump()
      << "\n";
  }
}
std::vector<double> rewards_of(const std::string& path) {
  std::ifstream f(path);
  std::vector<double> r;
  for (std::string line; std::getline(f, line);) r.push_back(nlohmann::json::parse(line)["reward"].get<double>());
  return r;
}
}  // namespace

TEST(CudaModel, RunDirectoriesMoveBetweenDevices) {
  CAIRN_REQUIRE_GPU();
  test::TempDir d;
  write_polite_pairs(d.file("pairs.jsonl"), 200, 9);
  {
    std::ofstream s(d.file("score.jsonl"));
    for (int i = 0; i < 50; ++i)
      s << nlohmann::json({{"prompt", "Tell me about topic " + std::to_string(i)},
                           {"response", i % 2 ? "Thank you, gladly." : "No."}})
               .dump()
        << "\n";
  }
  std::string out;
  const std::string pairs = d.file("pairs.jsonl");
  ASSERT_EQ(run("train --device cuda --train " + pairs + " --valid " + pairs + " --out " + d.file("gpu_run") +
                    " --preset tiny --vocab-size 300 --steps 30 --batch-pairs 16",
                &out),
            0)
      << out;
  ASSERT_EQ(run("train --device cpu --train " + pairs + " --valid " + pairs + " --out " + d.file("cpu_run") +
                    " --preset tiny --vocab-size 300 --steps 3 --batch-pairs 16",
                &out),
            0)
      << out;
  for (const std::string runname : {"gpu_run", "cpu_run"}) {
    for (const char* dev : {"cpu", "cuda"})
      ASSERT_EQ(run(std::string("score --device ") + dev + " --model " + d.file(runname) + " --input " +
                        d.file("score.jsonl") + " --output " + d.file(runname + "." + dev + ".jsonl"),
                    &out),
                0)
          << out;
    const auto a = rewards_of(d.file(runname + ".cpu.jsonl")), b = rewards_of(d.file(runname + ".cuda.jsonl"));
    ASSERT_EQ(a.size(), 50u);
    ASSERT_EQ(b.size(), 50u);
    EXPECT_LT(rel_l2(b, a), 3e-2) << runname << ": CUDA scores vs CPU scores of the same run directory";
  }
}

// The data-parallel path on the GPU with one rank under mpirun: the sharded loss and the gradient
// sync (NCCL when built with it: a communicator of one, ncclAllReduce on its own stream) against the
// plain one-process run, weights within 1e-5 after 10 steps (fp32 GEMMs).
TEST(CudaModel, DataParallelPathWithOneRankMatchesOneProcess) {
  CAIRN_REQUIRE_GPU();
  if (!dist::mpi_built()) GTEST_SKIP() << "built without MPI";
  test::TempDir d;
  write_polite_pairs(d.file("pairs.jsonl"), 120, 11);
  std::string out;
  ASSERT_EQ(run("tokenizer train --input " + d.file("pairs.jsonl") + " --out " + d.file("tok.model") + " --vocab-size 300", &out), 0)
      << out;
  const std::string flags = " --device cuda --cuda-math fp32 --train " + d.file("pairs.jsonl") + " --tokenizer " +
                            d.file("tok.model") + " --preset tiny --steps 10 --batch-pairs 8 --log-every 1 --out ";
  ASSERT_EQ(run("train" + flags + d.file("one"), &out), 0) << out;
  ASSERT_EQ(run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 180 mpirun --bind-to none -np 1 " + cairn_binary() + " train" +
                          flags + d.file("dp"),
                      &out),
            0)
      << out;
  EXPECT_NE(out.find("data parallel: 1 ranks"), std::string::npos) << out;
  ModelConfig c1, c2;
  std::vector<float> w1, w2;
  load_model(d.file("one"), &c1, &w1);
  load_model(d.file("dp"), &c2, &w2);
  ASSERT_EQ(w1.size(), w2.size());
  double m = 0;
  for (size_t i = 0; i < w1.size(); ++i) m = std::max(m, std::abs(static_cast<double>(w1[i]) - w2[i]));
  EXPECT_LT(m, 1e-5) << "max |dw| after 10 steps, " << (dist::nccl_built() ? "NCCL" : "MPI through host") << " gradient sync";
  std::printf("[ dp gpu   ] %s gradient sync, 1 rank vs 1 process: max |dw| %.3g\n", dist::nccl_built() ? "NCCL" : "staged MPI", m);
}

}  // namespace cairn
