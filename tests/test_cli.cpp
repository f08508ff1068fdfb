// End-to-end through the `cairn` binary: pairs → tokenizer → train → eval → score → resume on a
// small generated corpus; exit codes and messages for bad input; outputs never half-written.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cairn/checkpoint.h"
#include "cairn/io.h"
#include "cpu/ops.h"
#include "test_paths.h"
#include "toy_corpus.h"
#include "test_tmpdir.h"
#include "util/rng.h"

namespace cairn {
using test::TempDir;

struct CliResult {
  int code;
  std::string out;
};
static CliResult cairn_run(const std::string& args) {
  CliResult r{0, ""};
  r.out = test::run_capture(std::string(CAIRN_BINARY) + " " + args + " 2>&1", &r.code);
  return r;
}

// toy_pairs with pair i tagged with principles[i % size] (an empty name: no principle).
static std::string toy_pairs_tagged(int n, uint64_t seed, const std::vector<std::string>& principles) {
  std::string s;
  std::istringstream toy(toy_pairs(n, seed));
  int i = 0;
  for (std::string line; std::getline(toy, line); ++i) {
    auto j = nlohmann::json::parse(line);
    if (const std::string& p = principles[i % principles.size()]; !p.empty()) j["principle"] = p;
    s += j.dump() + "\n";
  }
  return s;
}

TEST(Cli, HelpForEveryCommand) {
  for (const char* c : {"train", "score", "eval", "pairs", "tokenizer train", "bench train", "bench attention"}) {
    CliResult r = cairn_run(std::string(c) + " --help");
    EXPECT_EQ(r.code, 0) << c << "\n" << r.out;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << c;
  }
  EXPECT_EQ(cairn_run("frobnicate").code, 2);
  EXPECT_EQ(cairn_run("train --bogus-flag").code, 2);
}

TEST(Cli, TrainEvalScoreResumeEndToEnd) {
  TempDir d;
  const std::string train = d.write("train.jsonl", toy_pairs(400, 1)), valid = d.write("valid.jsonl", toy_pairs(100, 2));
  CliResult tok = cairn_run("tokenizer train --input " + train + " --out " + d.file("tok.model") + " --vocab-size 400");
  ASSERT_EQ(tok.code, 0) << tok.out;
  const std::string common = "--train " + train + " --valid " + valid + " --out " + d.file("run") + " --tokenizer " +
                             d.file("tok.model") + " --preset tiny --d-model 32 --n-layers 1 --d-ff 64 --max-seq-len 64"
                             " --batch-pairs 16 --lr 3e-3 --log-every 5 --eval-every 10 --threads 2";
  CliResult tr = cairn_run("train " + common + " --steps 30");
  ASSERT_EQ(tr.code, 0) << tr.out;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "trainer_state.json", "optimizer.safetensors", "metrics.jsonl"})
    EXPECT_TRUE(std::filesystem::exists(d.file("run/") + f)) << f;
  // metrics.jsonl: one JSON object per logged step with the fields of docs/run-directory.md#metrics-log
  std::ifstream m(d.file("run/metrics.jsonl"));
  std::string line, last;
  int lines = 0;
  while (std::getline(m, line)) last = line, ++lines;
  EXPECT_EQ(lines, 6);
  auto lj = nlohmann::json::parse(last);
  for (const char* k : {"step", "loss", "acc", "lr", "grad_norm", "tokens_per_s", "valid_loss", "valid_acc"}) EXPECT_TRUE(lj.contains(k)) << k;

  CliResult ev = cairn_run("eval --json --model " + d.file("run") + " --pairs " + valid);
  ASSERT_EQ(ev.code, 0) << ev.out;
  auto ej = nlohmann::json::parse(ev.out.substr(ev.out.find('{')));
  EXPECT_GE(ej["accuracy"].get<double>(), 0.9) << ev.out;  // the politeness task is easy
  EXPECT_EQ(ej["pairs"], 100);

  // score keeps records byte for byte and in order, adds "reward"
  const std::string in = d.write("in.jsonl", "{\"prompt\": \"Tell me about a poem\", \"response\": \"Thank you for asking.\", \"k\": 1.50}\n"
                                             "\n{\"text\":\"Whatever.\"}\n");
  CliResult sc = cairn_run("score --model " + d.file("run") + " --input " + in + " --output " + d.file("out.jsonl"));
  ASSERT_EQ(sc.code, 0) << sc.out;
  std::ifstream o(d.file("out.jsonl"));
  std::string l1, l2;
  std::getline(o, l1), std::getline(o, l2);
  EXPECT_EQ(l1.rfind("{\"prompt\": \"Tell me about a poem\", \"response\": \"Thank you for asking.\", \"k\": 1.50,\"reward\":", 0), 0u) << l1;
  EXPECT_TRUE(nlohmann::json::parse(l2).contains("reward"));

  // resume continues to a larger step count; metrics stay one line per logged step
  CliResult re = cairn_run("train " + common + " --steps 40 --resume");
  ASSERT_EQ(re.code, 0) << re.out;
  EXPECT_EQ(nlohmann::json::parse(test::slurp(d.file("run/trainer_state.json")))["step"], 40);
  // an existing run is not overwritten without --resume
  EXPECT_EQ(cairn_run("train " + common + " --steps 5").code, 2);
}

// A toy train set (n pairs from seed), a valid set (n/3 pairs from seed + 1) and a tokenizer of the
// train set, in d; returns the train command's "--train ... --tokenizer ..." flags.
static std::string toy_data_flags(TempDir& d, int n, uint64_t seed, std::string& train, std::string& valid) {
  train = d.write("train.jsonl", toy_pairs(n, seed)), valid = d.write("valid.jsonl", toy_pairs(n / 3, seed + 1));
  EXPECT_EQ(cairn_run("tokenizer train --input " + train + " --out " + d.file("tok.model") + " --vocab-size 400").code, 0);
  return "--train " + train + " --tokenizer " + d.file("tok.model");
}

// --cpu-math bf16 trains the same task to the same accuracy (its first loss within bf16's rounding of
// fp32's), and the flag is checked.
TEST(Cli, Bf16CpuGemmsTrainAndEvaluate) {
  EXPECT_EQ(cairn_run("train --cpu-math fp16 --train x").code, 2);
  EXPECT_EQ(cairn_run("eval --device cuda --cpu-math bf16 --model x --pairs x").code, 2);
  if (const std::string why = cpu::bf16_gemm_unavailable(); !why.empty()) GTEST_SKIP() << why;
  TempDir d;
  std::string train, valid;
  const std::string common = toy_data_flags(d, 300, 7, train, valid) +
                             " --preset tiny --arch llama --d-model 32 --n-layers 2 --d-ff 64 --max-seq-len 64"
                             " --batch-pairs 16 --lr 3e-3 --log-every 5 --steps 30 --threads 2 --out ";
  CliResult b16 = cairn_run("train " + common + d.file("bf16") + " --cpu-math bf16");
  CliResult f32 = cairn_run("train " + common + d.file("fp32"));
  ASSERT_EQ(b16.code, 0) << b16.out;
  ASSERT_EQ(f32.code, 0) << f32.out;
  EXPECT_NE(b16.out.find("GEMMs bf16"), std::string::npos) << b16.out;
  std::ifstream mb(d.file("bf16/metrics.jsonl")), mf(d.file("fp32/metrics.jsonl"));
  std::string lb, lf;
  ASSERT_TRUE(std::getline(mb, lb) && std::getline(mf, lf));
  EXPECT_NEAR(nlohmann::json::parse(lb)["loss"].get<double>(), nlohmann::json::parse(lf)["loss"].get<double>(), 1e-2);
  for (const char* math : {"bf16", "fp32"}) {
    CliResult ev = cairn_run("eval --json --cpu-math " + std::string(math) + " --model " + d.file("bf16") + " --pairs " + valid);
    ASSERT_EQ(ev.code, 0) << ev.out;
    EXPECT_GE(nlohmann::json::parse(ev.out.substr(ev.out.find('{')))["accuracy"].get<double>(), 0.9) << math << ev.out;
  }
}

// Prefix sharing changes how a pair is computed, not what is learned: training with and without it
// follows the same loss curve (fp32 summation-order noise only), eval reports the same accuracy on
// either model and mode, and the JSON says how many tokens were computed.
TEST(Cli, PrefixSharingTrainsAndEvaluatesAsTheUnsharedLayout) {
  TempDir d;
  std::string train, valid;
  const std::string common = toy_data_flags(d, 200, 5, train, valid) +
                             " --preset tiny --d-model 32 --n-layers 2 --d-ff 64 --max-seq-len 64 --batch-pairs 8"
                             " --lr 3e-3 --log-every 5 --steps 20 --threads 1 --out ";
  CliResult on = cairn_run("train " + common + d.file("on"));
  CliResult off = cairn_run("train " + common + d.file("off") + " --no-prefix-sharing");
  ASSERT_EQ(on.code, 0) << on.out;
  ASSERT_EQ(off.code, 0) << off.out;
  EXPECT_NE(on.out.find("prefix sharing: 200 of 200 pairs share a prefix"), std::string::npos) << on.out;
  EXPECT_NE(off.out.find("prefix sharing: off"), std::string::npos) << off.out;
  std::ifstream mon(d.file("on/metrics.jsonl")), moff(d.file("off/metrics.jsonl"));
  int lines = 0;
  for (std::string a, b; std::getline(mon, a) && std::getline(moff, b); ++lines) {
    const auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
    EXPECT_NEAR(ja["loss"].get<double>(), jb["loss"].get<double>(), 1e-4) << "step " << ja["step"];
    EXPECT_EQ(ja["acc"], jb["acc"]);
    EXPECT_EQ(ja.contains("pairs_per_s"), true);
  }
  EXPECT_EQ(lines, 4);
  // the tokens per pass train announces (what a run is planned by) are the ones eval computes on the
  // same pairs, with and without sharing
  const auto per_pass = [](const std::string& out) {
    const size_t at = out.find(" tokens per pass");
    const size_t open = out.rfind('(', at);
    return at == std::string::npos || open == std::string::npos ? -1L : std::stol(out.substr(open + 1, at - open - 1));
  };
  CliResult et = cairn_run("eval --json --model " + d.file("on") + " --pairs " + train);
  ASSERT_EQ(et.code, 0) << et.out;
  const auto jt = nlohmann::json::parse(et.out.substr(et.out.find('{')));
  EXPECT_EQ(per_pass(on.out), jt["computed_tokens"].get<long>()) << on.out;
  EXPECT_EQ(per_pass(off.out), jt["sequence_tokens"].get<long>()) << off.out;
  EXPECT_EQ(cairn_run("train " + common + d.file("bad") + " --prefix-sharing sometimes").code, 2);
  EXPECT_EQ(cairn_run("train " + common + d.file("bad") + " --prefix-sharing on --no-prefix-sharing").code, 2);
  for (const char* run : {"on", "off"}) {
    CliResult es = cairn_run("eval --json --model " + d.file(run) + " --pairs " + valid);
    CliResult eu = cairn_run("eval --json --no-prefix-sharing --model " + d.file(run) + " --pairs " + valid);
    ASSERT_EQ(es.code, 0) << es.out;
    ASSERT_EQ(eu.code, 0) << eu.out;
    const auto js = nlohmann::json::parse(es.out.substr(es.out.find('{'))), ju = nlohmann::json::parse(eu.out.substr(eu.out.find('{')));
    EXPECT_EQ(js["accuracy"], ju["accuracy"]) << run;
    EXPECT_NEAR(js["bt_loss"].get<double>(), ju["bt_loss"].get<double>(), 1e-5) << run;
    EXPECT_TRUE(js["prefix_sharing"].get<bool>());
    EXPECT_LT(js["computed_tokens"].get<long>(), js["sequence_tokens"].get<long>());
    EXPECT_EQ(ju["computed_tokens"], ju["sequence_tokens"]);
    EXPECT_EQ(js["sequence_tokens"], ju["sequence_tokens"]);
  }
}

TEST(Cli, BadInputExitsThreeNamingFileAndLineAndWritesNothing) {
  TempDir d;
  const std::string good = R"({"chosen": "a b", "rejected": "c d"})";
  const std::string bad = d.write("bad.jsonl", good + "\n" + good + "\n" + R"({"chosen": "x"})" + "\n");
  CliResult r = cairn_run("pairs --from cai --input " + bad + " --output " + d.file("o.jsonl"));
  EXPECT_EQ(r.code, 3) << r.out;
  CliResult t = cairn_run("tokenizer train --input " + d.write("ok.jsonl", toy_pairs(50, 3)) + " --out " + d.file("tok.model") + " --vocab-size 400");
  ASSERT_EQ(t.code, 0) << t.out;
  CliResult tr = cairn_run("train --train " + bad + " --out " + d.file("run") + " --tokenizer " + d.file("tok.model") + " --steps 2");
  EXPECT_EQ(tr.code, 3);
  EXPECT_NE(tr.out.find(bad + ":3: missing field \"rejected\""), std::string::npos) << tr.out;
  CliResult skip = cairn_run("train --train " + bad + " --out " + d.file("run2") + " --tokenizer " + d.file("tok.model") +
                       " --steps 2 --preset tiny --d-model 32 --n-layers 1 --skip-bad");
  EXPECT_EQ(skip.code, 0) << skip.out;
  EXPECT_NE(skip.out.find("1 malformed lines skipped"), std::string::npos) << skip.out;

  // score: a bad record in the middle → exit 3 and the old output file is untouched
  const std::string prev = d.write("scored.jsonl", "previous results\n");
  const std::string in = d.write("s.jsonl", "{\"text\": \"fine\"}\n{\"prompt\": \"no response\"}\n");
  CliResult sc = cairn_run("score --model " + d.file("run2") + " --input " + in + " --output " + prev);
  EXPECT_EQ(sc.code, 3) << sc.out;
  EXPECT_NE(sc.out.find(in + ":2:"), std::string::npos) << sc.out;
  EXPECT_EQ(test::slurp(prev), "previous results\n");
  // a hostile model directory
  d.write("run2/model.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10));
  EXPECT_EQ(cairn_run("score --model " + d.file("run2") + " --input " + in + " --output " + d.file("x.jsonl")).code, 3);
}

}  // namespace cairn

namespace cairn {

// Hostile lines met while fuzzing the loaders (docs/fuzzing.md), through the binary: exit 3 naming
// file and line, where they exited 1 (a JSON type_error or out_of_range) or crashed (139, a stack
// overflow).
TEST(Cli, HostileJsonlLinesExitThree) {
  TempDir d;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::pair<const char*, std::string> cases[] = {
      {"judgments", R"({"prompt": "P", "response_a": "A", "response_b": "B", "judgments": [{"order": "ab", "winner": 2}]})"},
      {"judgments", R"({"prompt": "P", "response_a": "A", "response_b": "B", "judgments": [{"order": "ab", "winner": "a"}], "id": )" + deep + "}"},
      {"alpaca-eval", R"({"instruction": "I", "output_1": "A", "output_2": "B", "preference": 1e999})"},
  };
  for (const auto& [from, line] : cases) {
    const std::string in = d.write("in.jsonl", line + "\n");
    CliResult r = cairn_run(std::string("pairs --from ") + from + " --input " + in + " --output " + d.file("out.jsonl"));
    EXPECT_EQ(r.code, 3) << from << ": " << r.out.substr(0, 300);
    EXPECT_NE(r.out.find("error: " + in + ":1: "), std::string::npos) << r.out.substr(0, 300);
    EXPECT_FALSE(std::filesystem::exists(d.file("out.jsonl")));
  }
}

// Constitution heads + length head through the CLI: config.json lists the heads and weights (length
// weight 0), `score` writes every head under "rewards" and their weighted sum (length excluded) as
// "reward", `eval --json` breaks accuracy down by principle.
TEST(Cli, ConstitutionHeadsAndLengthHeadEndToEnd) {
  TempDir d;
  const std::string train = d.write("train.jsonl", toy_pairs_tagged(300, 4, {"", "helpful", "harmless"}));
  const std::string cons = d.write("constitution.json", R"({"principles": [
      {"name": "helpful", "text": "Choose the more helpful answer.", "weight": 0.6},
      {"name": "harmless", "text": "Choose the less harmful answer.", "weight": 0.4}]})");
  CliResult tr = cairn_run("train --train " + train + " --valid " + train + " --out " + d.file("run") +
                           " --constitution " + cons + " --length-head --length-lambda 0.5 --vocab-size 400"
                           " --preset tiny --d-model 32 --n-layers 1 --d-ff 64 --max-seq-len 64 --steps 20"
                           " --batch-pairs 16 --threads 2");
  ASSERT_EQ(tr.code, 0) << tr.out;
  const auto cfg = nlohmann::json::parse(test::slurp(d.file("run/config.json")));
  EXPECT_EQ(cfg["n_heads_out"], 3);
  EXPECT_EQ(cfg["head_names"], nlohmann::json({"helpful", "harmless", "length"}));
  EXPECT_NEAR(cfg["head_weights"][0].get<double>(), 0.6, 1e-6);
  EXPECT_NEAR(cfg["head_weights"][1].get<double>(), 0.4, 1e-6);
  EXPECT_EQ(cfg["head_weights"][2].get<double>(), 0.0);

  const std::string in = d.write("in.jsonl", "{\"prompt\": \"Tell me about a poem\", \"response\": \"Thank you.\"}\n"
                                             "{\"prompt\": \"Tell me about a poem\", \"response\": \"Whatever, go away.\"}\n");
  CliResult sc = cairn_run("score --model " + d.file("run") + " --input " + in + " --output " + d.file("out.jsonl"));
  ASSERT_EQ(sc.code, 0) << sc.out;
  std::ifstream o(d.file("out.jsonl"));
  int n = 0;
  for (std::string line; std::getline(o, line); ++n) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("rewards")) << line;
    for (const char* h : {"helpful", "harmless", "length"}) EXPECT_TRUE(j["rewards"].contains(h)) << line;
    const double composite = 0.6 * j["rewards"]["helpful"].get<double>() + 0.4 * j["rewards"]["harmless"].get<double>();
    EXPECT_NEAR(j["reward"].get<double>(), composite, 1e-5) << line;
  }
  EXPECT_EQ(n, 2);

  CliResult ev = cairn_run("eval --json --threads 2 --model " + d.file("run") + " --pairs " + train);
  ASSERT_EQ(ev.code, 0) << ev.out;
  const auto ej = nlohmann::json::parse(ev.out.substr(ev.out.find('{')));
  ASSERT_TRUE(ej.contains("by_principle")) << ev.out;
  // The last validation during training ran on the final weights with the same pairs, batch size and
  // threads: it reports what `cairn eval` reports (the scoring composite, length head at weight 0).
  std::ifstream m(d.file("run/metrics.jsonl"));
  std::string last;
  for (std::string line; std::getline(m, line);) last = line;
  const auto lj = nlohmann::json::parse(last);
  ASSERT_TRUE(lj.contains("valid_loss")) << last;
  EXPECT_NEAR(lj["valid_loss"].get<double>(), ej["bt_loss"].get<double>(), 1e-9);
  EXPECT_NEAR(lj["valid_acc"].get<double>(), ej["accuracy"].get<double>(), 1e-12);
  EXPECT_EQ(lj["valid_pairs"], ej["pairs"]);
  EXPECT_TRUE(ej["by_principle"].contains("helpful"));
  EXPECT_TRUE(ej["by_principle"].contains("harmless"));

  // a bad constitution is a data error naming the file
  const std::string bad = d.write("bad.json", R"({"principles": [{"name": "a", "weight": -1}]})");
  CliResult br = cairn_run("train --train " + train + " --valid " + train + " --out " + d.file("run2") +
                           " --constitution " + bad + " --steps 1 --preset tiny");
  EXPECT_EQ(br.code, 3) << br.out;
  EXPECT_NE(br.out.find("bad.json"), std::string::npos) << br.out;
  // every weight 0 (the composite would be 0 for every record), a control character in a name
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {R"({"principles": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]})", "every principle has weight 0"},
           {R"({"principles": [{"name": "a\nb"}]})", "principles[0]: \"name\" holds a control character"}}) {
    CliResult r = cairn_run("train --train " + train + " --out " + d.file("run3") + " --constitution " +
                            d.write("bad2.json", text) + " --steps 1 --preset tiny");
    EXPECT_EQ(r.code, 3) << r.out;
    EXPECT_NE(r.out.find("bad2.json: " + why), std::string::npos) << r.out;
    EXPECT_FALSE(std::filesystem::exists(d.file("run3"))) << r.out;
  }
}

}  // namespace cairn

namespace cairn {

// What a hostile probe found: failed writes, non-finite weights, an output that is the input, temp
// files of killed runs, tiny and empty data, empty responses, odd paths. One small trained run
// (tokenizer and 2 steps) serves every test of the suite.
class CliEdges : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    dir_->write("toy.jsonl", toy_pairs(60, 5));
    CliResult t = cairn_run("tokenizer train --input " + file("toy.jsonl") + " --out " + file("tok.model") + " --vocab-size 400");
    ASSERT_EQ(t.code, 0) << t.out;
    CliResult r = cairn_run("train " + train_flags(file("run")) + " --steps 2");
    ASSERT_EQ(r.code, 0) << r.out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::string train_flags(const std::string& out, const std::string& train = file("toy.jsonl")) {
    return "--train " + train + " --out " + out + " --tokenizer " + file("tok.model") +
           " --preset tiny --d-model 32 --n-layers 1 --d-ff 64 --max-seq-len 64 --batch-pairs 8 --threads 1";
  }
  // A copy of the trained run whose model.safetensors has `set` applied to one tensor.
  static std::string run_with_tensor(const std::string& name, const std::string& tensor, const std::function<void(std::vector<float>&)>& set) {
    const std::string out = file(name);
    std::filesystem::copy(file("run"), out, std::filesystem::copy_options::recursive);
    auto t = safetensors_parse(read_file(out + "/model.safetensors"), "model.safetensors");
    set(t.at(tensor).data);
    ParamTable table(read_config(out));
    std::vector<TensorRef> refs;
    for (const auto& info : table.tensors()) refs.push_back({info.name, info.shape, t.at(info.name).data.data()});
    write_file_atomic(out + "/model.safetensors", safetensors_serialize(refs, {{"format", "pt"}}));
    return out;
  }
  static TempDir* dir_;
};
TempDir* CliEdges::dir_ = nullptr;

TEST_F(CliEdges, FailedWritesExitOneAndSaySo) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TempDir d;
  // train: metrics.jsonl on a full disk (a link to /dev/full)
  std::filesystem::create_directories(d.file("run"));
  std::filesystem::create_symlink("/dev/full", d.file("run/metrics.jsonl"));
  CliResult tr = cairn_run("train " + train_flags(d.file("run")) + " --steps 2");
  EXPECT_EQ(tr.code, 1) << tr.out;
  EXPECT_NE(tr.out.find("cannot write " + d.file("run") + "/metrics.jsonl: No space left on device"), std::string::npos) << tr.out;
  EXPECT_EQ(tr.out.find("done:"), std::string::npos) << tr.out;
  // score and pairs: --output on a full disk; the link is written through, not replaced
  std::filesystem::create_symlink("/dev/full", d.file("full.jsonl"));
  const std::string in = d.write("in.jsonl", "{\"text\": \"Thank you.\"}\n");
  CliResult sc = cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("full.jsonl"));
  EXPECT_EQ(sc.code, 1) << sc.out;
  EXPECT_NE(sc.out.find("cannot write " + d.file("full.jsonl") + ": No space left on device"), std::string::npos) << sc.out;
  EXPECT_TRUE(std::filesystem::is_symlink(d.file("full.jsonl")));
  const std::string ae = d.write("ae.jsonl", R"({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 2})" "\n");
  CliResult pa = cairn_run("pairs --from alpaca-eval --input " + ae + " --output " + d.file("full.jsonl"));
  EXPECT_EQ(pa.code, 1) << pa.out;
  EXPECT_NE(pa.out.find("No space left on device"), std::string::npos) << pa.out;
  // results on stdout count too
  int code = 0;
  const std::string out = test::run_capture(std::string(CAIRN_BINARY) + " pairs --json --from alpaca-eval --input " + ae +
                                                " --output " + d.file("p.jsonl") + " 2>&1 >/dev/full", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot write to stdout: No space left on device"), std::string::npos) << out;
}

TEST_F(CliEdges, NonFiniteWeightsAreRefusedAndOverflowIsNeverWritten) {
  const std::string in = dir_->write("in.jsonl", "{\"text\": \"Thank you.\"}\n{\"text\": \"Whatever.\"}\n");
  // NaN in a tensor: exit 3 naming it
  const std::string nan_run = run_with_tensor("nan_run", "head.weight", [](std::vector<float>& w) { w[3] = NAN; });
  CliResult a = cairn_run("score --model " + nan_run + " --input " + in + " --output " + file("o.jsonl"));
  EXPECT_EQ(a.code, 3) << a.out;
  EXPECT_NE(a.out.find("tensor \"head.weight\" holds NaN at index 3"), std::string::npos) << a.out;
  // a head weight beyond float32 in config.json: exit 3 naming the field
  const std::string big = file("big_weight");
  std::filesystem::copy(file("run"), big, std::filesystem::copy_options::recursive);
  auto cfg = nlohmann::json::parse(test::slurp(big + "/config.json"));
  cfg["head_weights"] = {1e39};
  dir_->write("big_weight/config.json", cfg.dump());
  CliResult b = cairn_run("score --model " + big + " --input " + in + " --output " + file("o.jsonl"));
  EXPECT_EQ(b.code, 3) << b.out;
  EXPECT_NE(b.out.find("config.json: field \"head_weights\" holds 1e+39"), std::string::npos) << b.out;
  // finite weights whose forward pass overflows: exit 1 naming the record, and no output at all
  const std::string huge = run_with_tensor("huge_run", "head.weight", [](std::vector<float>& w) { std::fill(w.begin(), w.end(), 3e38f); });
  CliResult c = cairn_run("score --model " + huge + " --input " + in + " --output " + file("o.jsonl"));
  EXPECT_EQ(c.code, 1) << c.out;
  EXPECT_NE(c.out.find(in + ":1: the reward is not finite"), std::string::npos) << c.out;
  EXPECT_FALSE(std::filesystem::exists(file("o.jsonl")));
}

TEST_F(CliEdges, OutputThatIsAnInputOrADirectoryIsRefusedFirst) {
  TempDir d;
  const std::string ae = d.write("ae.jsonl", R"({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 2})" "\n");
  const std::string dotted = d.file("./ae.jsonl");  // another spelling of the same path
  CliResult p = cairn_run("pairs --from alpaca-eval --input " + ae + " --output " + dotted);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("would replace the input"), std::string::npos) << p.out;
  const std::string in = d.write("in.jsonl", "{\"text\": \"Thank you.\"}\n");
  std::filesystem::create_hard_link(in, d.file("link.jsonl"));
  CliResult s = cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("link.jsonl"));
  EXPECT_EQ(s.code, 2) << s.out;
  CliResult t = cairn_run("tokenizer train --input " + ae + " --out " + dotted);
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_EQ(test::slurp(ae), R"({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 2})" "\n");
  EXPECT_EQ(test::slurp(in), "{\"text\": \"Thank you.\"}\n");
  EXPECT_EQ(std::filesystem::hard_link_count(in), 2u);
  // a directory as --output fails before any record is read (line 2 is malformed)
  const std::string bad = d.write("bad.jsonl", "{\"text\": \"fine\"}\n{\"prompt\": \"no response\"}\n");
  std::filesystem::create_directories(d.file("outdir"));
  CliResult o = cairn_run("score --model " + file("run") + " --input " + bad + " --output " + d.file("outdir"));
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_NE(o.out.find("cannot write " + d.file("outdir") + ": Is a directory"), std::string::npos) << o.out;
}

TEST_F(CliEdges, TrainRemovesTempFilesOfKilledRunsOnly) {
  const std::string run = file("temps");
  std::filesystem::copy(file("run"), run, std::filesystem::copy_options::recursive);
  const std::string live = std::to_string(getpid());  // this process: alive
  const std::vector<std::string> stale = {"optimizer.safetensors.tmp.999999999.0", "model.safetensors.tmp.999999999.4"};
  const std::vector<std::string> kept = {"optimizer.safetensors.tmp." + live + ".1", "notes.txt.tmp.999999999.0",
                                         "config.json.tmp.999999999", "config.json.tmp.x.1"};
  for (const auto& f : stale) dir_->write("temps/" + f, "torn");
  for (const auto& f : kept) dir_->write("temps/" + f, "keep");
  CliResult r = cairn_run("train " + train_flags(run) + " --steps 3 --resume");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& f : stale) EXPECT_FALSE(std::filesystem::exists(run + "/" + f)) << f;
  for (const auto& f : kept) EXPECT_TRUE(std::filesystem::exists(run + "/" + f)) << f;
  EXPECT_NE(r.out.find("removed optimizer.safetensors.tmp.999999999.0"), std::string::npos) << r.out;
}

TEST_F(CliEdges, TinyDataCapsTheVocabularyOrNamesTheFlag) {
  TempDir d;
  const std::string tiny = d.write("tiny.jsonl", R"({"prompt": "hi", "chosen": "hello there", "rejected": "go away"})" "\n");
  CliResult capped = cairn_run("tokenizer train --input " + tiny + " --out " + d.file("t.model"));
  EXPECT_EQ(capped.code, 0) << capped.out;
  EXPECT_NE(capped.out.find("note: the text supports only"), std::string::npos) << capped.out;
  CliResult asked = cairn_run("tokenizer train --input " + tiny + " --out " + d.file("u.model") + " --vocab-size 8192");
  EXPECT_EQ(asked.code, 2) << asked.out;
  EXPECT_NE(asked.out.find("--vocab-size 8192 is more than the text supports"), std::string::npos) << asked.out;
  EXPECT_FALSE(std::filesystem::exists(d.file("u.model")));
  CliResult tr = cairn_run("train --train " + tiny + " --out " + d.file("run") + " --steps 1 --preset tiny --d-model 32 --n-layers 1 --threads 1");
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_NE(tr.out.find("note: the training text supports only"), std::string::npos) << tr.out;
  EXPECT_LT(nlohmann::json::parse(test::slurp(d.file("run/config.json")))["vocab_size"].get<int>(), 8192);
}

TEST_F(CliEdges, EmptyResponsesAreScoredAndCounted) {
  TempDir d;
  const std::string in = d.write("in.jsonl", "{\"prompt\": \"hi\", \"response\": \"\"}\n{\"text\": \"\"}\n");
  CliResult s = cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("o.jsonl"));
  ASSERT_EQ(s.code, 0) << s.out;
  std::istringstream o(test::slurp(d.file("o.jsonl")));
  int n = 0;
  for (std::string line; std::getline(o, line); ++n) EXPECT_TRUE(nlohmann::json::parse(line)["reward"].is_number()) << line;
  EXPECT_EQ(n, 2);
  const std::string pairs = d.write("p.jsonl", toy_pairs(8, 9) + R"({"prompt": "hi", "chosen": "hello", "rejected": ""})" "\n");
  CliResult e = cairn_run("eval --json --model " + file("run") + " --pairs " + pairs);
  ASSERT_EQ(e.code, 0) << e.out;
  CliResult t = cairn_run("train " + train_flags(d.file("run"), pairs) + " --steps 1");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find(pairs + ": 9 pairs from 9 lines, 1 with an empty response"), std::string::npos) << t.out;
}

TEST_F(CliEdges, EmptyTrainingDataDirectoryInputAndByteOrderMark) {
  TempDir d;
  // an empty training file: exit 3, and the run directory this command created is gone again
  const std::string empty = d.write("empty.jsonl", "");
  CliResult a = cairn_run("train --train " + empty + " --out " + d.file("new/run") + " --steps 1");
  EXPECT_EQ(a.code, 3) << a.out;
  EXPECT_FALSE(std::filesystem::exists(d.file("new"))) << a.out;
  CliResult b = cairn_run("train " + train_flags(d.file("run2"), empty) + " --steps 1");
  EXPECT_EQ(b.code, 3) << b.out;
  EXPECT_FALSE(std::filesystem::exists(d.file("run2"))) << b.out;
  // a directory as --input is named as one
  CliResult c = cairn_run("score --model " + file("run") + " --input " + d.file("") + " --output " + d.file("o.jsonl"));
  EXPECT_EQ(c.code, 3) << c.out;
  EXPECT_NE(c.out.find("is a directory"), std::string::npos) << c.out;
  // a UTF-8 byte-order mark is not copied into the output
  const std::string bom = d.write("bom.jsonl", "\xEF\xBB\xBF{\"text\": \"fine\"}\n");
  ASSERT_EQ(cairn_run("score --model " + file("run") + " --input " + bom + " --output " + d.file("b.jsonl")).code, 0);
  EXPECT_EQ(test::slurp(d.file("b.jsonl")).rfind("{\"text\": \"fine\",\"reward\":", 0), 0u) << test::slurp(d.file("b.jsonl"));
}

TEST_F(CliEdges, RewardsAreWrittenInTheShortestFormThatReadsBackExactly) {
  TempDir d;
  // the same text twice in one batch: appended ("reward" added) and re-serialized ("reward" replaced)
  const std::string in = d.write("in.jsonl", "{\"text\": \"Thank you.\"}\n{\"text\": \"Thank you.\", \"reward\": 0}\n");
  ASSERT_EQ(cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("o.jsonl")).code, 0);
  std::istringstream o(test::slurp(d.file("o.jsonl")));
  std::string l1, l2;
  std::getline(o, l1), std::getline(o, l2);
  const std::string t1 = l1.substr(l1.find("\"reward\":") + 9), t2 = l2.substr(l2.find("\"reward\":") + 9);
  EXPECT_EQ(t1, t2) << l1 << "\n" << l2;
  // the float32 reward in at most the 9 significant digits a float32 needs (the re-serialized line
  // carried all 17 of a double, the appended one only 7 before)
  std::string digits;
  for (char c : t1.substr(0, t1.find_first_of("eE}")))
    if (std::isdigit(static_cast<unsigned char>(c))) digits += c;
  digits.erase(0, digits.find_first_not_of('0'));
  EXPECT_LE(digits.size(), 9u) << t1;
}

TEST_F(CliEdges, UnknownPrinciplesAreCountedOnce) {
  TempDir d;
  const std::string pairs = toy_pairs_tagged(30, 6, {"honest", "helpful", "helpful"});  // "honest" is no head
  const std::string cons = d.write("c.json", R"({"principles": [{"name": "helpful"}, {"name": "harmless"}]})");
  CliResult r = cairn_run("train " + train_flags(d.file("run"), d.write("p.jsonl", pairs)) + " --steps 1 --constitution " + cons);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: 10 pairs name a principle that is not a reward head of this model (e.g. \"honest\""),
            std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("warning"), r.out.rfind("warning")) << r.out;
}

// What a second hostile probe found: each exits with the documented code and message, and leaves
// every file it was given as it was.
TEST_F(CliEdges, SecondProbeDefectsExitCleanlyAndKeepFiles) {
  TempDir d;
  // a closed pipe on stdout (the reader, `true`, is gone long before eval has scored anything):
  // exit 1 and the message, not death by SIGPIPE (exit 141)
  int code = 0;
  test::run_capture("(" + std::string(CAIRN_BINARY) + " eval --json --threads 1 --model " + file("run") + " --pairs " +
                        file("toy.jsonl") + " 2>" + d.file("err") + "; echo $? >" + d.file("rc") + ") | true", &code);
  EXPECT_EQ(test::slurp(d.file("rc")), "1\n");
  EXPECT_NE(test::slurp(d.file("err")).find("cannot write to stdout: Broken pipe"), std::string::npos) << test::slurp(d.file("err"));
  // --threads outside [0, 1024]: a usage error before anything runs (100000 crashed)
  const std::string in = d.write("in.jsonl", "{\"text\": \"Thank you.\"}\n");
  for (const char* t : {"100000", "-1"}) {
    CliResult r = cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("o.jsonl") + " --threads " + t);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("--threads must be 0 (all cores) to 1024"), std::string::npos) << r.out;
  }
  for (const char* b : {"0", "-1"}) {
    CliResult e = cairn_run("eval --model " + file("run") + " --pairs " + file("toy.jsonl") + " --batch-pairs " + b);
    EXPECT_EQ(e.code, 2) << e.out;
  }
  // export into the run itself, or into another run: refused, the run intact
  const std::string run = d.file("run");
  std::filesystem::copy(file("run"), run, std::filesystem::copy_options::recursive);
  const std::string config = test::slurp(run + "/config.json");
  for (const std::string& out : {run + "/", d.file("./run"), file("run")}) {
    CliResult e = cairn_run("export --format hf --model " + run + " --out " + out);
    EXPECT_EQ(e.code, 2) << out << ": " << e.out;
  }
  EXPECT_EQ(test::slurp(run + "/config.json"), config);
  // a training input that is a file of the run directory: refused, the input intact
  const std::string metrics = test::slurp(run + "/metrics.jsonl");
  CliResult t = cairn_run("train " + train_flags(run, run + "/metrics.jsonl") + " --resume --steps 3");
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_NE(t.out.find("would replace the input"), std::string::npos) << t.out;
  EXPECT_EQ(test::slurp(run + "/metrics.jsonl"), metrics);
  CliResult sentences = cairn_run("tokenizer train --input " + file("toy.jsonl") + " --out " + d.file("t.model") + " --max-sentences 0");
  EXPECT_EQ(sentences.code, 2) << sentences.out;
  // an output in a missing directory is named as given, not as its temp file
  CliResult missing = cairn_run("score --model " + file("run") + " --input " + in + " --output " + d.file("no/such/dir/o.jsonl"));
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_NE(missing.out.find("cannot create " + d.file("no/such/dir/o.jsonl") + ": No such file or directory"), std::string::npos)
      << missing.out;
  // a bad --tokenizer is named as given
  const std::string empty_tok = d.write("empty.model", "");
  CliResult tok = cairn_run("train " + train_flags(d.file("tokrun")) + " --steps 1 --tokenizer " + empty_tok);
  EXPECT_EQ(tok.code, 3) << tok.out;
  EXPECT_NE(tok.out.find(empty_tok), std::string::npos) << tok.out;
  CliResult not_dir = cairn_run("train " + train_flags(in) + " --steps 1");
  EXPECT_EQ(not_dir.code, 2) << not_dir.out;
  EXPECT_NE(not_dir.out.find("exists and is not a directory"), std::string::npos) << not_dir.out;
  // optimizer settings that mean nothing: refused before anything is written
  for (const char* bad_flag : {"--lr -1", "--lr 0", "--clip -1", "--weight-decay -1", "--min-lr-ratio 2", "--warmup -1",
                               "--center-coef -1", "--length-lambda -1"}) {
    CliResult r = cairn_run("train " + train_flags(d.file("flags")) + " --steps 1 " + bad_flag);
    EXPECT_EQ(r.code, 2) << bad_flag << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(d.file("flags"))) << bad_flag;
  }
  // a principle named "length" beside --length-head: two heads of one name, refused
  const std::string cons = d.write("c.json", R"({"principles": [{"name": "length"}]})");
  CliResult h = cairn_run("train " + train_flags(d.file("heads")) + " --steps 1 --length-head --constitution " + cons);
  EXPECT_EQ(h.code, 2) << h.out;
  EXPECT_NE(h.out.find("the constitution has a principle of that name"), std::string::npos) << h.out;
  EXPECT_FALSE(std::filesystem::exists(d.file("heads")));
  // the trainer state's fields are checked by type (exit 3 naming the file), and a validation an
  // interrupt left pending is not redone without --valid
  auto with_state = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    const std::string r = d.file(name);
    std::filesystem::copy(file("run"), r, std::filesystem::copy_options::recursive);
    std::map<std::string, std::string> meta;
    auto t = safetensors_parse(read_file(r + "/optimizer.safetensors"), "optimizer.safetensors", &meta);
    nlohmann::json st = nlohmann::json::parse(meta.at("trainer_state"));
    edit(st);
    std::vector<TensorRef> refs;
    for (const auto& [k, v] : t) refs.push_back({k, v.shape, v.data.data()});
    write_file_atomic(r + "/optimizer.safetensors", safetensors_serialize(refs, {{"trainer_state", st.dump()}}));
    return r;
  };
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> bad = {
      {"best_valid_acc", [](nlohmann::json& st) { st["best_valid_acc"] = "x"; }},
      {"lr", [](nlohmann::json& st) { st["flags"]["lr"] = "x"; }},
      {"batch_pairs", [](nlohmann::json& st) { st["flags"]["batch_pairs"] = "x"; }},
      {"total_steps", [](nlohmann::json& st) { st["flags"]["total_steps"] = 1ll << 40; }},
      {"flags", [](nlohmann::json& st) { st["flags"] = nlohmann::json::array({1}); }},
      {"validation_pending", [](nlohmann::json& st) { st["validation_pending"] = 1; }}};
  for (const auto& [field, edit] : bad) {
    const std::string r = with_state("bad_" + field, edit);
    CliResult b = cairn_run("train " + train_flags(r) + " --resume");
    EXPECT_EQ(b.code, 3) << field << ": " << b.out;
    EXPECT_NE(b.out.find("optimizer.safetensors: trainer_state"), std::string::npos) << field << ": " << b.out;
    EXPECT_NE(b.out.find("\"" + field + "\" must be"), std::string::npos) << field << ": " << b.out;
  }
  const std::string pending = with_state("pending", [](nlohmann::json& st) { st["validation_pending"] = true; });
  CliResult p = cairn_run("train " + train_flags(pending) + " --resume --steps 3");
  EXPECT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("is not redone (no --valid)"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("done: 3 steps"), std::string::npos) << p.out;
}

}  // namespace cairn
