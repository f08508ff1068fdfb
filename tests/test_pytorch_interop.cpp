// A run directory written by cairn loads into PyTorch (scripts/load_pytorch.py, strict
// load_state_dict) and reproduces `cairn score` within 1e-4. Skipped where Debian's python3 has no
// torch or sentencepiece module.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cairn/checkpoint.h"
#include "cairn/tokenizer.h"
#include "test_tmpdir.h"
#include "test_paths.h"
#include "test_util.h"

namespace cairn {
using test::TempDir;

using test::run_capture;

TEST(PyTorchInterop, LoadPytorchReproducesCairnScore) {
  int code = 0;
  run_capture("/usr/bin/python3 -c 'import torch, sentencepiece' 2>/dev/null", &code);
  if (code != 0) GTEST_SKIP() << "Debian python3 lacks torch or sentencepiece (scripts/setup.sh installs them)";
  TempDir d;
  std::string pairs;
  for (int i = 0; i < 60; ++i)
    pairs += nlohmann::json({{"prompt", "Tell me about item " + std::to_string(i) + " in the garden, é 字"},
                             {"chosen", "A careful answer about tomatoes and rivers."}, {"rejected", "No."}}).dump() + "\n";
  train_tokenizer({d.write("p.jsonl", pairs)}, d.file("tokenizer.model"), 400, "bpe");
  auto tok_ptr = load_sentencepiece(d.file("tokenizer.model"));
  const Tokenizer& tok = *tok_ptr;
  ModelConfig cfg;
  cfg.vocab_size = tok.vocab_size(), cfg.max_seq_len = 24, cfg.d_model = 32, cfg.n_layers = 2, cfg.n_heads = 4, cfg.d_ff = 64;
  cfg.n_heads_out = 2, cfg.head_names = {"helpful", "harmless"}, cfg.head_weights = {0.7f, 0.3f};
  ParamTable t(cfg);
  std::vector<float> p = test::rand_vec(t.total(), 9, -0.3f, 0.3f);
  for (const auto& info : t.tensors())
    if (info.init == InitKind::Ones)
      for (size_t i = 0; i < info.numel; ++i) p[info.offset + i] += 1.0f;
  save_model(d.file(""), cfg, p.data());
  std::string recs;
  recs += R"({"prompt": "Tell me about the garden", "response": "Tomatoes and rivers."})" "\n";
  recs += R"({"text": "A long text that will certainly be truncated from the left because it is longer than twenty four tokens of this tiny model, the end is kept."})" "\n";
  recs += R"({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "response": [{"role": "assistant", "content": "Hello é 字"}]})" "\n";
  const std::string in = d.write("in.jsonl", recs);
  run_capture(std::string(CAIRN_BINARY) + " score --model " + d.file("") + " --input " + in + " --output " + d.file("out.jsonl") + " 2>&1", &code);
  ASSERT_EQ(code, 0);
  const std::string py = run_capture("/usr/bin/python3 " CAIRN_SOURCE_DIR "/scripts/load_pytorch.py " + d.file("") + " --texts " + in, &code);
  ASSERT_EQ(code, 0) << py;
  std::ifstream ours(d.file("out.jsonl"));
  std::istringstream theirs(py);
  std::string a, b;
  int n = 0;
  while (std::getline(ours, a)) {
    ASSERT_TRUE(std::getline(theirs, b));
    auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
    EXPECT_NEAR(ja["reward"].get<double>(), jb["reward"].get<double>(), 1e-4) << a << "\n" << b;
    for (const char* h : {"helpful", "harmless"})
      EXPECT_NEAR(ja["rewards"][h].get<double>(), jb["rewards"][h].get<double>(), 1e-4) << h;
    ++n;
  }
  EXPECT_EQ(n, 3);
}

}  // namespace cairn
