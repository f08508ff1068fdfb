// Data-parallel training through the `cairn` binary under `mpirun --oversubscribe -np 2` (1 thread
// per rank): K = 2 against one process with the same global batch and seed, K = 2 twice, resuming
// across rank counts, and a rank killed mid-run (docs/distributed.md). Skipped in a build without MPI;
// a build with MPI needs mpirun (openmpi-bin, scripts/setup.sh) and fails without it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cairn/checkpoint.h"
#include "cairn/dist.h"
#include "cairn/io.h"
#include "test_paths.h"
#include "test_tmpdir.h"
#include "toy_corpus.h"

namespace cairn {
namespace {
using test::TempDir;
namespace fs = std::filesystem;

struct Result {
  int code;
  std::string out;
};

// `cairn <args>` under `mpirun -np ranks`.
Result mpirun_cairn(int ranks, const std::string& args) {
  const std::string cmd =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun --oversubscribe --bind-to none -np " +
      std::to_string(ranks) + " " + CAIRN_BINARY + " " + args;
  Result r{0, ""};
  r.out = test::run_capture(cmd + " 2>&1", &r.code);
  return r;
}

// `cairn <args>` in one process without a launcher (ranks 1), or under mpirun with `ranks` processes.
Result cairn(int ranks, const std::string& args) {
  if (ranks > 1) return mpirun_cairn(ranks, args);
  const std::string cmd = "timeout 300 " + std::string(CAIRN_BINARY) + " " + args;
  Result r{0, ""};
  r.out = test::run_capture(cmd + " 2>&1", &r.code);
  return r;
}

std::vector<nlohmann::json> metrics(const std::string& run) {
  std::vector<nlohmann::json> v;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

std::vector<float> weights(const std::string& run) {
  ModelConfig cfg;
  std::vector<float> p;
  load_model(run, &cfg, &p);
  return p;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dist::mpi_built()) GTEST_SKIP() << "built without MPI";
    int code = 0;
    test::run_capture("command -v mpirun", &code);
    ASSERT_EQ(code, 0) << "mpirun not found: scripts/setup.sh installs openmpi-bin";
    train_ = d_.write("train.jsonl", toy_pairs(300, 1));
    valid_ = d_.write("valid.jsonl", toy_pairs(45, 2));
    Result t = cairn(1, "tokenizer train --input " + train_ + " --out " + d_.file("tok.model") + " --vocab-size 400");
    ASSERT_EQ(t.code, 0) << t.out;
  }
  // A small model so each run takes a second or two; `extra` adds or overrides flags.
  std::string flags(const std::string& out, const std::string& extra = "") const {
    return "train --train " + train_ + " --valid " + valid_ + " --tokenizer " + d_.file("tok.model") + " --out " + out +
           " --d-model 32 --n-layers 2 --n-heads 2 --d-ff 64 --max-seq-len 48 --threads 1 --seed 7 --log-every 1"
           " --eval-every 10 --save-every 10 " + extra;
  }
  TempDir d_;
  std::string train_, valid_;
};

// Per-step loss within 1e-5 relative (fp32 gradients summed in another order, then through AdamW),
// weights within 2e-5 absolute after 20 steps; the same accuracy and validation.
void expect_equivalent(const std::string& one, const std::string& two, int steps) {
  const auto m1 = metrics(one), m2 = metrics(two);
  ASSERT_EQ(m1.size(), static_cast<size_t>(steps));
  ASSERT_EQ(m2.size(), m1.size());
  for (size_t i = 0; i < m1.size(); ++i) {
    const double l1 = m1[i]["loss"], l2 = m2[i]["loss"];
    EXPECT_NEAR(l2, l1, 1e-5 * std::abs(l1)) << "step " << i + 1;
    EXPECT_EQ(m1[i]["acc"], m2[i]["acc"]) << "step " << i + 1;
    EXPECT_NEAR(m2[i]["grad_norm"].get<double>(), m1[i]["grad_norm"].get<double>(), 1e-4 * m1[i]["grad_norm"].get<double>());
    EXPECT_EQ(m2[i]["ranks"], 2);
    if (m1[i].contains("valid_loss")) {
      EXPECT_NEAR(m2[i]["valid_loss"].get<double>(), m1[i]["valid_loss"].get<double>(), 1e-5);
      EXPECT_EQ(m2[i]["valid_acc"], m1[i]["valid_acc"]);
    }
  }
  const double dw = max_abs_diff(weights(one), weights(two));
  EXPECT_LT(dw, 2e-5) << "weights after " << steps << " steps";
  std::printf("[ dp       ] K=2 vs K=1 after %d steps: max |Δw| %.3g\n", steps, dw);
}

TEST_F(Distributed, TwoRanksMatchOneProcess) {
  const std::string one = d_.file("one"), two = d_.file("two");
  Result a = cairn(1, flags(one, "--steps 20 --batch-pairs 8"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = cairn(2, flags(two, "--steps 20 --batch-pairs 8"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("data parallel: 2 ranks"), std::string::npos) << b.out;
  expect_equivalent(one, two, 20);
  // rank 0 alone wrote: one progress line per step, no duplicate from rank 1
  EXPECT_EQ(b.out.find("done: 20 steps"), b.out.rfind("done: 20 steps")) << b.out;
}

// One rank under mpirun takes the data-parallel path (sharded loss, gradient sync) with a group of
// one: bit-identical to the plain process.
TEST_F(Distributed, OneRankUnderMpirunIsBitIdenticalToOneProcess) {
  const std::string one = d_.file("one"), dp = d_.file("dp");
  Result a = cairn(1, flags(one, "--steps 12 --batch-pairs 6 --length-head"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = mpirun_cairn(1, flags(dp, "--steps 12 --batch-pairs 6 --length-head"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("data parallel: 1 ranks"), std::string::npos) << b.out;
  EXPECT_EQ(metrics(dp).back()["ranks"], 1);
  for (const char* f : {"model.safetensors", "optimizer.safetensors"})
    EXPECT_TRUE(read_file(one + "/" + f) == read_file(dp + "/" + f)) << f;
}

// An odd batch (4 + 3 pairs), llama with grouped-query attention, the lowest block frozen (no bucket
// for it), the length head (a batch-level penalty: gathered rewards), gradients summed after backward.
TEST_F(Distributed, TwoRanksMatchOneProcessLlamaFrozenLengthHeadNoOverlap) {
  const std::string one = d_.file("one"), two = d_.file("two");
  const std::string x = "--steps 20 --batch-pairs 7 --arch llama --n-kv-heads 1 --freeze-layers 1 --length-head";
  Result a = cairn(1, flags(one, x));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = cairn(2, flags(two, x + " --no-overlap"));
  ASSERT_EQ(b.code, 0) << b.out;
  expect_equivalent(one, two, 20);
}

TEST_F(Distributed, TwoRanksTwiceAreBitIdentical) {
  const std::string a = d_.file("a"), b = d_.file("b");
  for (const std::string& out : {a, b}) {
    Result r = cairn(2, flags(out, "--steps 12 --batch-pairs 6"));
    ASSERT_EQ(r.code, 0) << r.out;
  }
  for (const char* f : {"model.safetensors", "optimizer.safetensors"})
    EXPECT_TRUE(read_file(a + "/" + f) == read_file(b + "/" + f)) << f << " differs between two K=2 runs";
}

// A batch smaller than the ranks: one rank has no pairs that step and still takes part.
TEST_F(Distributed, ARankWithoutPairsInAStep) {
  const std::string one = d_.file("one"), two = d_.file("two");
  Result a = cairn(1, flags(one, "--steps 20 --batch-pairs 1"));
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = cairn(2, flags(two, "--steps 20 --batch-pairs 1"));
  ASSERT_EQ(b.code, 0) << b.out;
  expect_equivalent(one, two, 20);
}

// Stops a run once its first checkpoint exists: SIGKILL to one rank of an mpirun (ranks > 1) or
// SIGINT to a single process. Returns the exit status and the seconds from the signal to the end.
Result stop_after_first_checkpoint(int ranks, const std::string& args, double* seconds, const std::string& run) {
  const std::string launch = ranks > 1 ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
                                         "--bind-to none -np " + std::to_string(ranks) + " "
                                       : "";
  const std::string victim = ranks > 1 ? "kill -9 $(pgrep -P $M | tail -1)" : "kill -INT $M";
  const std::string script =
      launch + CAIRN_BINARY + " " + args + " > " + run + ".log 2>&1 & M=$!; "
      "for i in $(seq 1 3000); do grep -qs '\"step\": *[1-9]' " + run + "/trainer_state.json && break; sleep 0.01; done; " +
      victim + "; t0=$(date +%s.%N); wait $M; rc=$?; echo \"rc=$rc seconds=$(echo \"$(date +%s.%N) - $t0\" | bc)\"";
  Result r{0, ""};
  r.out = test::run_capture("timeout 120 bash -c '" + [&] {
    std::string q;
    for (char c : script) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q;
  }() + "'", &r.code);
  const size_t rc = r.out.find("rc="), sec = r.out.find("seconds=");
  EXPECT_NE(rc, std::string::npos) << r.out;
  if (rc == std::string::npos || sec == std::string::npos) return {-1, r.out};
  *seconds = std::stod(r.out.substr(sec + 8));
  return {std::stoi(r.out.substr(rc + 3)), r.out + read_file(run + ".log")};
}

int saved_step(const std::string& run) { return read_trainer_state(run)["step"].get<int>(); }

// Finishes the stopped `run` (stopped after step `at`) with `ranks` ranks and returns the largest
// weight difference from the uninterrupted `ref`, or infinity when the resume fails.
double resume_against(const std::string& ref, const std::string& run, const std::string& resume_flags, int ranks, int at) {
  Result r = cairn(ranks, resume_flags);
  EXPECT_EQ(r.code, 0) << r.out;
  if (r.code != 0) return INFINITY;
  EXPECT_NE(r.out.find("resumed " + run + " at step " + std::to_string(at)), std::string::npos) << r.out;
  return max_abs_diff(weights(ref), weights(run));
}

// Kill one rank of a K = 2 run: every rank exits non-zero within seconds, the last checkpoint
// resumes with K = 1, and the finished run matches an uninterrupted one-process run.
TEST_F(Distributed, KilledRankStopsAllAndTheCheckpointResumesWithOneRank) {
  const std::string ref = d_.file("ref"), run = d_.file("run");
  const std::string x = "--steps 150 --batch-pairs 6 --save-every 5 --eval-every 1000";
  Result a = cairn(1, flags(ref, x));
  ASSERT_EQ(a.code, 0) << a.out;
  double secs = 0;
  Result k = stop_after_first_checkpoint(2, flags(run, x), &secs, run);
  EXPECT_NE(k.code, 0) << k.out;
  EXPECT_LT(secs, 30.0) << "ranks did not all exit after one was killed\n" << k.out;
  int left = 0;
  test::run_capture("pgrep -f -- '[c]airn train .*--out " + run + " ' > /dev/null", &left);  // [c]: not this shell
  EXPECT_NE(left, 0) << "a rank of the killed job is still running";
  const int at = saved_step(run);
  ASSERT_GT(at, 0);
  ASSERT_LT(at, 150) << "the run finished before the kill; the test needs a longer run";
  const double dw = resume_against(ref, run, flags(run, x + " --resume"), 1, at);
  EXPECT_LT(dw, 1e-4) << "killed at step " << at << " (K=2), resumed with K=1";
  std::printf("[ dp       ] rank killed after step %d: all ranks out in %.2fs (exit %d); resumed K=1: max |Δw| %.3g\n", at,
              secs, k.code, dw);
}

// Interrupt a one-process run (Ctrl-C: checkpoint, exit 130) and resume it with K = 2.
TEST_F(Distributed, OneProcessRunResumesWithTwoRanks) {
  const std::string ref = d_.file("ref"), run = d_.file("run");
  const std::string x = "--steps 150 --batch-pairs 6 --save-every 5 --eval-every 1000";
  Result a = cairn(1, flags(ref, x));
  ASSERT_EQ(a.code, 0) << a.out;
  double secs = 0;
  Result k = stop_after_first_checkpoint(1, flags(run, x), &secs, run);
  EXPECT_EQ(k.code, 130) << k.out;
  const int at = saved_step(run);
  ASSERT_LT(at, 150) << "the run finished before the interrupt; the test needs a longer run";
  const double dw = resume_against(ref, run, flags(run, x + " --resume"), 2, at);
  EXPECT_LT(dw, 1e-4) << "interrupted at step " << at << " (K=1), resumed with K=2";
  std::printf("[ dp       ] K=1 interrupted after step %d, resumed K=2: max |Δw| %.3g\n", at, dw);
}

// A failure on one rank alone (its own copy of the data is bad) ends every rank with that rank's error.
TEST_F(Distributed, AFailureOnOneRankStopsAll) {
  // rank 1 reads a file that rank 0 never sees: OMPI_COMM_WORLD_RANK picks the path
  const std::string bad = d_.write("bad1.jsonl", "{\"prompt\": \"x\", \"chosen\": 3}\n");
  fs::copy_file(train_, d_.file("bad0.jsonl"));
  const std::string wrapper = d_.write("by_rank.sh", "#!/bin/sh\nexec " + std::string(CAIRN_BINARY) +
                                                         " \"$@\" --train " + d_.file("bad") + "${OMPI_COMM_WORLD_RANK}.jsonl\n");
  fs::permissions(wrapper, fs::perms::owner_all);
  Result r{0, ""};
  std::string args = flags(d_.file("run"), "--steps 5 --batch-pairs 4");
  args.erase(args.find("--train " + train_), 8 + train_.size());  // the wrapper gives each rank its own
  r.out = test::run_capture("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun --oversubscribe "
                            "--bind-to none -np 2 " + wrapper + " " + args + " 2>&1", &r.code);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "timed out: a rank hung\n" << r.out;
  EXPECT_NE(r.out.find("rank 1: error: " + bad + ":1"), std::string::npos) << r.out;
}

// `score` and `eval` split their input over the ranks: the same records in the same order, the same
// rewards (each record's forward does not depend on the batch it shares, within 1e-5), the same report.
TEST_F(Distributed, ScoreAndEvalSplitOverRanksKeepInputOrder) {
  const std::string run = d_.file("run");
  Result t = cairn(1, flags(run, "--steps 10 --batch-pairs 8"));
  ASSERT_EQ(t.code, 0) << t.out;
  std::string records;
  std::istringstream pairs(toy_pairs(61, 9));
  int i = 0;
  for (std::string line; std::getline(pairs, line); ++i) {
    const auto j = nlohmann::json::parse(line);
    records += nlohmann::json{{"id", i}, {"prompt", j["prompt"]}, {"response", j[i % 2 ? "chosen" : "rejected"]}}.dump() + "\n";
    if (i == 30) records += "{\"id\": \"bad\", \"prompt\": 5}\n";  // passed through unscored, in place
  }
  const std::string in = d_.write("records.jsonl", records);
  for (int ranks : {1, 2}) {
    Result r = cairn(ranks, "score --skip-bad --threads 1 --batch-size 7 --model " + run + " --input " + in + " --output " +
                                d_.file("scored" + std::to_string(ranks) + ".jsonl"));
    ASSERT_EQ(r.code, 0) << r.out;
    Result e = cairn(ranks, "eval --json --threads 1 --batch-pairs 5 --model " + run + " --pairs " + valid_ + " > " +
                                d_.file("eval" + std::to_string(ranks) + ".json"));
    ASSERT_EQ(e.code, 0) << e.out;
  }
  std::istringstream a(read_file(d_.file("scored1.jsonl"))), b(read_file(d_.file("scored2.jsonl")));
  int n = 0;
  for (std::string la, lb; std::getline(a, la);) {
    ASSERT_TRUE(static_cast<bool>(std::getline(b, lb))) << "line " << n;
    const auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    EXPECT_EQ(ja["id"], jb["id"]) << "line " << n;
    EXPECT_EQ(ja.contains("reward"), jb.contains("reward")) << "line " << n;
    if (ja.contains("reward")) {
      EXPECT_NEAR(ja["reward"].get<double>(), jb["reward"].get<double>(), 1e-5) << "line " << n;
    }
    ++n;
  }
  EXPECT_EQ(n, 62);
  std::string rest;
  EXPECT_FALSE(static_cast<bool>(std::getline(b, rest))) << "K=2 wrote more lines";
  auto report = [&](const char* f) {  // the JSON line (stderr's notes went to the same file)
    std::istringstream in(read_file(d_.file(f)));
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line);
    ADD_FAILURE() << f << ": no JSON report";
    return nlohmann::json::object();
  };
  const auto e1 = report("eval1.json"), e2 = report("eval2.json");
  for (const char* k : {"accuracy", "decided_pairs", "length_baseline_accuracy", "sequence_tokens", "computed_tokens"})
    EXPECT_EQ(e1[k], e2[k]) << k;
  EXPECT_NEAR(e1["bt_loss"].get<double>(), e2["bt_loss"].get<double>(), 1e-6);
  EXPECT_NEAR(e1["reward_length_pearson"].get<double>(), e2["reward_length_pearson"].get<double>(), 1e-5);
}

}  // namespace
}  // namespace cairn
