// End-to-end through the `cairn` binary: pairs → tokenizer → train → eval → score → resume on a
// small generated corpus; exit codes and messages for bad input; outputs never half-written.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_paths.h"
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

// A learnable toy corpus: the chosen answer is polite ("please"/"thank you"), the rejected one is not.
static std::string toy_pairs(int n, uint64_t seed) {
  const char* topics[] = {"the weather", "a recipe", "my homework", "the train times", "a poem", "the news"};
  const char* good[] = {"Thank you for asking, here is a careful answer about", "Please find below a kind explanation of"};
  const char* bad[] = {"Whatever, figure out", "No. Go away and read about"};
  Rng r(seed);
  std::string s;
  for (int i = 0; i < n; ++i) {
    const std::string t = topics[r.below(6)];
    nlohmann::json j = {{"prompt", "Tell me about " + t + " " + std::to_string(i)},
                        {"chosen", std::string(good[r.below(2)]) + " " + t + "."},
                        {"rejected", std::string(bad[r.below(2)]) + " " + t + "."}};
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
  std::string pairs;
  std::istringstream toy(toy_pairs(300, 4));
  int i = 0;
  for (std::string line; std::getline(toy, line); ++i) {
    auto j = nlohmann::json::parse(line);
    if (i % 3 == 1) j["principle"] = "helpful";
    if (i % 3 == 2) j["principle"] = "harmless";
    pairs += j.dump() + "\n";
  }
  const std::string train = d.write("train.jsonl", pairs);
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
}

}  // namespace cairn
