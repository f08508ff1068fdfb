// Importing pretrained language models (include/cairn/pretrained.h) against Hugging Face transformers
// running the same weights: tiny random Llama (multi-head and grouped-query, tied and untied
// embeddings, odd sizes) and GPT-2 models written by save_pretrained, and SmolLM2-135M from its GGUF
// (dequantized by gguf-py and un-permuted by transformers' own GGUF helper on the reference side).
// What is compared: the final normed hidden state at the last token of each sequence — cairn reads
// it through an identity reward head (n_heads_out = d_model, head.weight = I), so it is exactly what
// the reward head sees. Also: hostile model directories are refused with a DataError naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cairn/backend.h"
#include "cairn/chat_template.h"
#include "cairn/data.h"
#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/gguf.h"
#include "cairn/io.h"
#include "cairn/model.h"
#include "cairn/pretrained.h"
#include "test_paths.h"
#include "test_tmpdir.h"
#include "test_util.h"

namespace cairn {
using test::TempDir;

namespace {

void run_python(const std::string& args) {
  const std::string cmd = test::python() + " " + test::source_dir() + "/tests/python/hf_reference.py " + args;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

ModelConfig one_head() {
  ModelConfig h;
  h.n_heads_out = 1, h.head_names = {"reward"}, h.head_weights = {1.0f};
  return h;
}

// The imported model with its reward head replaced by the identity: rewards = final hidden state.
std::vector<float> final_hidden(const PretrainedModel& m, const std::vector<std::vector<int32_t>>& seqs) {
  ModelConfig cfg = m.cfg;
  const int C = cfg.d_model;
  cfg.n_heads_out = C, cfg.head_names.clear(), cfg.head_weights.assign(C, 0.0f);
  for (int c = 0; c < C; ++c) cfg.head_names.push_back("h" + std::to_string(c));
  ParamTable src(m.cfg), dst(cfg);
  std::vector<float> p(dst.total(), 0.0f);
  for (const auto& info : src.tensors()) {
    if (info.name.rfind("head.", 0) == 0) continue;
    const ParamInfo* d = dst.find(info.name);
    std::copy_n(m.params.begin() + info.offset, info.numel, p.begin() + d->offset);
  }
  for (int c = 0; c < C; ++c) p[dst.head_w + static_cast<size_t>(c) * C + c] = 1.0f;
  auto be = make_backend("cpu", 2);
  Model model(cfg, *be);
  model.set_params(p.data());
  TokenBatch b;
  b.clear();
  for (const auto& s : seqs) b.add(s);
  std::vector<float> r;
  model.forward(b, r, false);
  return r;
}

std::vector<double> read_rows(const std::string& path) {
  std::vector<double> out;
  for (const auto& row : nlohmann::json::parse(test::slurp(path)))
    for (const auto& v : row) out.push_back(v.get<double>());
  return out;
}

}  // namespace

class HfImport : public ::testing::TestWithParam<const char*> {};

TEST_P(HfImport, FinalHiddenStatesMatchTransformers) {
  TempDir d;
  const std::string dir = d.file("model");
  std::filesystem::create_directories(dir);
  run_python(std::string("make-tiny ") + GetParam() + " " + dir + " 7");
  const PretrainedModel m = load_pretrained(dir, one_head(), 0, 1);
  EXPECT_EQ(m.source, "hf");
  EXPECT_EQ(m.cfg.max_seq_len, 64);
  ASSERT_NE(m.tokenizer, nullptr);
  Rng r(3);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {1, 5, 17, 64, 33}) {
    std::vector<int32_t> s(len);
    for (auto& t : s) t = static_cast<int32_t>(r.below(m.tokenizer->vocab_size()));
    seqs.push_back(s);
  }
  std::ofstream(d.file("ids.json")) << nlohmann::json(seqs).dump();
  run_python("hidden " + dir + " " + d.file("ids.json") + " " + d.file("ref.json"));
  const std::vector<float> got = final_hidden(m, seqs);
  EXPECT_TRUE(test::all_close(got, read_rows(d.file("ref.json")), 1e-4, 1e-4)) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Models, HfImport, ::testing::Values("llama", "llama-gqa-tied", "gpt2"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s) ch = ch == '-' ? '_' : ch;
                           return s;
                         });

// SmolLM2-135M-Instruct (Q4_1/Q8_0 GGUF, 30 layers, 9 query / 3 key-value heads) on 20 real texts of
// the bundled judgments. Tolerance 2e-3 absolute + 2e-3 relative on hidden states of magnitude up to
// ~10: both sides compute in fp32 over 30 layers with different summation orders.
TEST(GgufImport, SmolLM2FinalHiddenStatesMatchTransformers) {
  const std::string gguf = test::smollm2_gguf();
  ASSERT_TRUE(std::filesystem::exists(gguf)) << gguf << " (scripts/get_smollm2.sh fetches it)";
  const PretrainedModel m = load_pretrained(gguf, one_head(), 128, 1);
  EXPECT_EQ(m.source, "gguf");
  EXPECT_EQ(m.cfg.arch, "llama");
  EXPECT_EQ(m.cfg.n_layers, 30);
  EXPECT_EQ(m.cfg.d_model, 576);
  EXPECT_EQ(m.cfg.n_heads, 9);
  EXPECT_EQ(m.cfg.kv_heads(), 3);
  EXPECT_EQ(m.cfg.d_ff, 1536);
  EXPECT_EQ(m.cfg.vocab_size, 49152);
  EXPECT_FLOAT_EQ(m.cfg.rope_theta, 100000.0f);
  EXPECT_TRUE(m.cfg.tie_embeddings);
  EXPECT_EQ(m.cfg.bos_id, 1);
  EXPECT_EQ(m.cfg.eos_id, 2);
  EXPECT_NE(m.chat_template.find("<|im_start|>"), std::string::npos);
  LineReader in(test::source_dir() + "/data/alpaca-eval/valid.jsonl.gz");
  std::vector<std::vector<int32_t>> seqs;
  std::string line;
  for (int i = 0; in.next(line) && seqs.size() < 20; ++i) {
    if (i % 7) continue;
    const auto j = parse_json_line(line, in.path(), in.line_number());
    bool cut = false;
    const std::string text = render_prompt_response(j.at("instruction").get<std::string>(), j.at("output_1").get<std::string>());
    seqs.push_back(m.tokenizer->encode_for_model(text, m.cfg.max_seq_len, &cut));
  }
  ASSERT_EQ(seqs.size(), 20u);
  TempDir d;
  std::ofstream(d.file("ids.json")) << nlohmann::json(seqs).dump();
  run_python("hidden - " + d.file("ids.json") + " " + d.file("ref.json") + " --gguf " + gguf);
  const std::vector<float> got = final_hidden(m, seqs);
  EXPECT_TRUE(test::all_close(got, read_rows(d.file("ref.json")), 2e-3, 2e-3));
}

// Hostile or unsupported model directories: each a DataError that names the problem.
TEST(HfImport, BadDirectoriesAreRefusedByName) {
  TempDir d;
  const std::string dir = d.file("m");
  std::filesystem::create_directories(dir);
  run_python("make-tiny llama " + dir + " 1");
  const auto cfg = nlohmann::json::parse(test::slurp(dir + "/config.json"));
  auto expect_refused = [&](const std::string& what, const std::string& needle, auto&& mutate) {
    const std::string bad = d.file("bad_" + std::to_string(std::hash<std::string>{}(what)));
    std::filesystem::remove_all(bad);
    std::filesystem::copy(dir, bad);
    mutate(bad);
    try {
      load_pretrained(bad, one_head(), 0, 1);
      ADD_FAILURE() << what << ": accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << what << ": " << e.what();
    }
  };
  auto set_cfg = [&](const std::string& key, const nlohmann::json& v) {
    return [=](const std::string& p) {
      auto j = cfg;
      if (v.is_null()) j.erase(key);
      else j[key] = v;
      std::ofstream(p + "/config.json") << j.dump();
    };
  };
  expect_refused("unknown architecture", "model_type \"mistral\"", set_cfg("model_type", "mistral"));
  expect_refused("missing dimension", "hidden_size", set_cfg("hidden_size", nullptr));
  expect_refused("wrong type", "hidden_size", set_cfg("hidden_size", "big"));
  expect_refused("rope scaling", "rope_scaling", set_cfg("rope_scaling", {{"type", "linear"}, {"factor", 2.0}}));
  expect_refused("biases", "bias", set_cfg("attention_bias", true));
  expect_refused("activation", "hidden_act", set_cfg("hidden_act", "gelu"));
  expect_refused("wrong size", "has shape", set_cfg("intermediate_size", 77));
  // a header whose dimensions no tensor backs: refused before the table (here 2^24 x d floats) is allocated
  expect_refused("dimensions beyond the tensors", "parameters but its tensors hold only", set_cfg("vocab_size", 1 << 24));
  expect_refused("config not JSON", "not valid JSON", [](const std::string& p) { std::ofstream(p + "/config.json") << "{oops"; });
  expect_refused("no weights", "no model.safetensors", [](const std::string& p) { std::filesystem::remove(p + "/model.safetensors"); });
  expect_refused("no tokenizer", "tokenizer.json", [](const std::string& p) { std::filesystem::remove(p + "/tokenizer.json"); });
  expect_refused("truncated weights", "safetensors", [](const std::string& p) {
    std::filesystem::resize_file(p + "/model.safetensors", std::filesystem::file_size(p + "/model.safetensors") / 2);
  });
  expect_refused("shard escaping the directory", "plain file name", [](const std::string& p) {
    std::filesystem::remove(p + "/model.safetensors");
    std::ofstream(p + "/model.safetensors.index.json") << R"({"weight_map": {"a": "../../etc/passwd"}})";
  });
  expect_refused("missing tensor", "missing tensor", [](const std::string& p) {
    auto t = safetensors_parse(read_file(p + "/model.safetensors"), p);
    std::vector<TensorRef> refs;
    for (const auto& [name, x] : t)
      if (name.find("layers.1.mlp.up_proj") == std::string::npos) refs.push_back({name, x.shape, x.data.data()});
    write_file_atomic(p + "/model.safetensors", safetensors_serialize(refs));
  });
  auto poison = [](float v) {
    return [v](const std::string& p) {
      auto t = safetensors_parse(read_file(p + "/model.safetensors"), p);
      std::vector<TensorRef> refs;
      for (auto& [name, x] : t) {
        if (name.find("layers.0.self_attn.k_proj") != std::string::npos) x.data[x.data.size() / 2] = v;
        refs.push_back({name, x.shape, x.data.data()});
      }
      write_file_atomic(p + "/model.safetensors", safetensors_serialize(refs));
    };
  };
  expect_refused("NaN weight", "k_proj.weight\" holds NaN", poison(std::nanf("")));
  expect_refused("infinite weight", "k_proj.weight\" holds an infinity", poison(-INFINITY));
  EXPECT_THROW(load_pretrained(d.file("nope"), one_head(), 0, 1), DataError);
  EXPECT_THROW(load_pretrained(d.write("x.gguf", "GGUF but not really"), one_head(), 0, 1), DataError);
}

}  // namespace cairn

namespace cairn {
namespace {

struct Cli {
  int code;
  std::string out;
};
Cli cairn_cli(const std::string& args) {
  Cli r{0, ""};
  r.out = test::run_capture(std::string(CAIRN_BINARY) + " " + args + " 2>&1", &r.code);
  return r;
}

std::string toy_pairs(int n) {
  std::string s;
  Rng r(5);
  for (int i = 0; i < n; ++i) {
    const std::string topic = std::vector<std::string>{"the fox", "a dog", "reward models", "the world"}[r.below(4)];
    s += nlohmann::json{{"prompt", "Tell me about " + topic}, {"chosen", "Here is a careful answer about " + topic + "."},
                        {"rejected", "No."}}.dump() + "\n";
  }
  return s;
}

}  // namespace

// The whole path a user takes: --init from a Hugging Face model, train (lower block frozen), score,
// export; transformers' AutoModelForSequenceClassification on the exported directory gives the
// rewards `cairn score` wrote (GPT-2: including the head bias, carried by ln_f.bias).
class ExportRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(ExportRoundTrip, TransformersReproducesCairnScore) {
  TempDir d;
  const std::string hf = d.file("base");
  std::filesystem::create_directories(hf);
  run_python(std::string("make-tiny ") + GetParam() + " " + hf + " 11");
  const std::string train = d.write("train.jsonl", toy_pairs(64));
  Cli tr = cairn_cli("train --train " + train + " --out " + d.file("run") + " --init " + hf +
                     " --chat-template plain --steps 4 --batch-pairs 8 --lr 3e-3 --center-coef 0.1 --freeze-layers 1 --threads 2");
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_NE(tr.out.find("trainable"), std::string::npos) << tr.out;
  const std::vector<std::string> texts = {"Here is a careful answer about the fox.", "No.", "\n\nHuman: hi\n\nAssistant: hello there",
                                          "A longer text, with punctuation; digits 12345 and  double  spaces."};
  std::string records;
  for (const auto& t : texts) records += nlohmann::json{{"text", t}}.dump() + "\n";
  Cli sc = cairn_cli("score --model " + d.file("run") + " --input " + d.write("in.jsonl", records) + " --output " +
                     d.file("scored.jsonl") + " --threads 2");
  ASSERT_EQ(sc.code, 0) << sc.out;
  Cli ex = cairn_cli("export --format hf --model " + d.file("run") + " --out " + d.file("hf_out"));
  ASSERT_EQ(ex.code, 0) << ex.out;
  std::ofstream(d.file("texts.json")) << nlohmann::json(texts).dump();
  run_python("seqcls " + d.file("hf_out") + " " + d.file("texts.json") + " " + d.file("logits.json"));
  const auto logits = read_rows(d.file("logits.json"));
  std::ifstream in(d.file("scored.jsonl"));
  std::vector<float> rewards;
  for (std::string line; std::getline(in, line);) rewards.push_back(nlohmann::json::parse(line)["reward"].get<float>());
  ASSERT_EQ(rewards.size(), texts.size());
  EXPECT_TRUE(test::all_close(rewards, logits, 1e-4, 1e-4)) << GetParam();
  const auto cfg = nlohmann::json::parse(test::slurp(d.file("run/config.json")));
  if (std::string(GetParam()) == "gpt2") {  // the head bias moved (the centering term), so the fold was exercised
    ModelConfig c;
    std::vector<float> p;
    load_model(d.file("run"), &c, &p);
    EXPECT_NE(p[ParamTable(c).head_b], 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ExportRoundTrip, ::testing::Values("llama-gqa-tied", "gpt2"),
                         [](const auto& info) { return std::string(info.param) == "gpt2" ? "gpt2" : "llama_gqa_tied"; });

// cairn's ChatML rendering is what transformers' apply_chat_template makes of SmolLM2's own Jinja
// template (default system message included), for conversations with and without a system turn.
TEST(ChatTemplates, ChatMLMatchesTransformersOnSmolLM2sTemplate) {
  const PretrainedModel m = load_pretrained(test::smollm2_gguf(), one_head(), 64, 1);
  const ChatTemplate t = ChatTemplate::detect(m.chat_template);
  EXPECT_EQ(t.name(), "chatml");
  EXPECT_EQ(t.default_system(), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<std::vector<Message>> convs = {
      {{"user", "What is 2+2?"}, {"assistant", "4."}},
      {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!\nHow can I help?"}},
      {{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d  "}}};
  TempDir d;
  std::ofstream(d.file("t.jinja")) << m.chat_template;
  nlohmann::json cj = nlohmann::json::array();
  for (const auto& c : convs) {
    nlohmann::json msgs = nlohmann::json::array();
    for (const auto& msg : c) msgs.push_back({{"role", msg.role}, {"content", msg.content}});
    cj.push_back(msgs);
  }
  std::ofstream(d.file("c.json")) << cj.dump();
  run_python("chat " + d.file("t.jinja") + " " + d.file("c.json") + " " + d.file("out.json"));
  const auto want = nlohmann::json::parse(test::slurp(d.file("out.json")));
  for (size_t i = 0; i < convs.size(); ++i) EXPECT_EQ(t.render(convs[i]), want[i].get<std::string>()) << i;
  // an HH transcript is split into the same turns
  const auto parsed = parse_transcript("\n\nHuman: What is 2+2?\n\nAssistant: 4.");
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(t.render(parsed), want[0].get<std::string>());
  EXPECT_THROW(ChatTemplate::detect("{{ messages }}"), std::invalid_argument);
  EXPECT_THROW(ChatTemplate::by_name("vicuna"), std::invalid_argument);
}

}  // namespace cairn

namespace cairn {

// `train --init` from the SmolLM2 GGUF end to end on the CPU: the run directory keeps the model's
// tokenizer (tokenizer.json) and chat template (chatml with its default system message), only the
// blocks above --freeze-layers change, and eval's accuracy / BT loss equal the last validation's.
TEST(GgufImport, TrainFromSmolLM2KeepsTokenizerTemplateAndFrozenBlocks) {
  TempDir d;
  const std::string pairs = d.write("p.jsonl", toy_pairs(16));
  Cli tr = cairn_cli("train --init " + test::smollm2_gguf() + " --train " + pairs + " --valid " + pairs + " --out " +
                     d.file("run") + " --freeze-layers 29 --max-seq-len 64 --steps 2 --batch-pairs 8 --lr 1e-4 --threads 2");
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_NE(tr.out.find("chatml"), std::string::npos) << tr.out;
  const auto cfg = nlohmann::json::parse(test::slurp(d.file("run/config.json")));
  EXPECT_EQ(cfg["arch"], "llama");
  EXPECT_EQ(cfg["chat_template"], "chatml");
  EXPECT_EQ(cfg["chat_system"], "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_TRUE(std::filesystem::exists(d.file("run/tokenizer.json")));
  EXPECT_FALSE(std::filesystem::exists(d.file("run/tokenizer.model")));
  // frozen: block 0's gate rows are still the GGUF's ffn_gate, block 29's have trained away
  ModelConfig c;
  std::vector<float> p;
  load_model(d.file("run"), &c, &p);
  const ParamTable t(c);
  const GgufFile g(test::smollm2_gguf());
  for (int layer : {0, 29}) {
    const std::vector<float> gate = g.read_tensor_f32("blk." + std::to_string(layer) + ".ffn_gate.weight");
    const ParamInfo* fc = t.find("blocks." + std::to_string(layer) + ".mlp.fc.weight");
    EXPECT_EQ(std::equal(gate.begin(), gate.end(), p.begin() + fc->offset), layer == 0) << "block " << layer;
  }
  Cli ev = cairn_cli("eval --json --threads 2 --model " + d.file("run") + " --pairs " + pairs);
  ASSERT_EQ(ev.code, 0) << ev.out;
  const auto ej = nlohmann::json::parse(ev.out.substr(ev.out.find('{')));
  std::ifstream m(d.file("run/metrics.jsonl"));
  std::string last;
  for (std::string line; std::getline(m, line);) last = line;
  const auto lj = nlohmann::json::parse(last);
  EXPECT_NEAR(lj["valid_loss"].get<double>(), ej["bt_loss"].get<double>(), 1e-9);
  EXPECT_NEAR(lj["valid_acc"].get<double>(), ej["accuracy"].get<double>(), 1e-12);
}

}  // namespace cairn
