// Byte-level BPE (include/cairn/bpe_tokenizer.h) against Hugging Face tokenizers 0.19.1, id for id, on
// the bundled judgments (every distinct instruction/output_1/output_2 of data/alpaca-eval) plus edge
// cases (scripts, emoji, combining marks, digit and whitespace runs, contractions, special tokens,
// invalid UTF-8 and texts cut mid-character): SmolLM2 from its GGUF vocabulary (make_bpe_tokenizer)
// and from the tokenizer.json SmolLM2 publishes (rebuilt by tests/python/bpe_reference.py), a GPT-2-
// style and a Llama-3-style tokenizer trained by tokenizers, and variants exercising every Split
// behaviour and added-token flag. Also: save() round trips through tokenizers and cairn, decode
// inverts encode, BOS/EOS/pad rules, and hostile files and specs are DataErrors. Python references
// come from the venv (test_paths.h); a missing venv or GGUF fails the test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "cairn/bpe_tokenizer.h"
#include "cairn/data.h"
#include "cairn/errors.h"
#include "long_text.h"
#include "test_paths.h"
#include "test_tmpdir.h"
#include "util/rng.h"

namespace cairn {
namespace {
using json = nlohmann::json;
using test::TempDir;
using Ids = std::vector<int32_t>;

using test::run_capture;

// Runs tests/python/bpe_reference.py; throws (failing the test) when it fails.
void reference(const std::string& args) {
  int code = 0;
  const std::string cmd =
      test::python() + " " + test::source_dir() + "/tests/python/bpe_reference.py " + args + " 2>&1";
  const std::string out = run_capture(cmd, &code);
  if (code != 0)
    throw std::runtime_error("bpe_reference.py " + args + " failed (" + std::to_string(code) + "):\n" + out);
}

std::string escaped(const std::string& s, size_t max = 60) {
  std::string o;
  for (size_t i = 0; i < s.size() && o.size() < max; ++i) {
    const unsigned char c = s[i];
    if (c == '\n')
      o += "\\n";
    else if (c < 0x20 || c == 0x7F)
      o += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else
      o += static_cast<char>(c);
  }
  return o;
}

// ---- texts -------------------------------------------------------------------------------------------

std::vector<std::string> judgment_texts() {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for (const char* f : {"valid.jsonl.gz", "train.jsonl.gz"}) {
    LineReader r(test::source_dir() + "/data/alpaca-eval/" + f);
    std::string line;
    while (r.next(line)) {
      const json j = json::parse(line);
      for (const char* k : {"instruction", "output_1", "output_2"})
        if (j.contains(k) && j[k].is_string() && seen.insert(j[k].get<std::string>()).second) out.push_back(j[k]);
    }
  }
  return out;
}

std::vector<std::string> edge_cases() {
  std::vector<std::string> t = {
      "",
      " ",
      "  ",
      "\t",
      "\n",
      "\n\n\n",
      "a\n\n\nb",
      "trailing spaces   ",
      "   leading",
      "tabs\tand\t\ttabs",
      "\r\n",
      "mixed \t\n \r\n  x",
      "a  b   c    d",
      " \n \n",
      "end\n",
      "1234567",
      "12 345 6789",
      "3.14159",
      "1,000,000",
      "x1y22z333",
      "0x1F 007 -42 +3e10",
      "\u0663\u0664\u0665 \u0661\u0662",
      "\u216b \u00bd \u00b2 \u2460",
      "\uff11\uff12\uff13",
      "I'm you're he's it'll we'd they've can't",
      "'S 'T 'RE 'VE 'M 'LL 'D",
      "x'S x'\u017f x'K x'\uff33",
      "don't DON'T Don'T",
      "''s 's's",
      "rock'n'roll",
      "\U0001F44D\U0001F3FD \U0001F1FA\U0001F1F8 \u2764\uFE0F \U0001F468\u200D\U0001F469\u200D\U0001F467",
      "\U0001F600\U0001F600\U0001F600",
      "emoji\U0001F680end",
      "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002",
      "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
      "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
      "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
      "\u05e9\u05dc\u05d5\u05dd",
      "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
      "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
      "e\u0301 a\u0308 n\u0303",
      "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312",
      "\u00c5ngstr\u00f6m caf\u00e9 na\u00efve",
      "\u00a0",
      "a\u00a0b",
      "a\u3000b",
      "a\u2028b",
      "a\u2029b",
      "a\u0085b",
      "a\u180e b",
      "\u180e!",
      "a\u200bb",
      "\ufeffBOM",
      "\x04\x06\x13 ctl \x14\x16\x1d",
      "\x1c\x1d\x1e\x1f",
      std::string("nul\0byte", 8),
      "\x7f del",
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
      "<|endoftext|>",
      "a<|endoftext|>b",
      "<|im_start|><|im_end|>",
      "<|im_start",
      "<|im_end|>>",
      " <|im_end|> ",
      "<<|im_end|>",
      "<repo_name>x<file_sep>y",
      "<|begin_of_text|>hello<|end_of_text|>",
      "x <|begin_of_text|>  y",
      "<s> </s> <pad>",
      std::string(5000, 'a'),
      std::string(1000, ' '),
      std::string(3000, '!'),
      std::string(500, '\n'),
      "def foo(x):\n    return x ** 2  # comment\n",
      "<html><body>&nbsp;</body></html>",
      "C:\\Users\\x",
      "https://example.com/a?b=c&d=e",
      "$$\\frac{a}{b}$$",
      "```python\nprint('hi')\n```",
      "\xff",
      "abc\xff"
      "def",
      "\xc3",
      "\xc3(",
      "\xe2\x82",
      "\xed\xa0\x80",
      "\xf0\x9f\x98",
      "\xc0\xaf",
      "\xf5\x80\x80\x80",
      "\x80\x80",
      "ok\xf0\x9f\x98\x80ok\xf0\x9f",
      "\xef\xbf\xbd",
      "\xe0\x80\xaf",
      "\xf4\x90\x80\x80",
      "\U00050000",
      "\U000E0041",
      "\U0010FFFF",
  };
  std::string ab;
  for (int i = 0; i < 2000; ++i) ab += "ab";
  t.push_back(ab);
  return t;
}

// Texts cut at byte positions that split characters, and with stray bytes spliced in (deterministic).
std::vector<std::string> cut_texts(const std::vector<std::string>& texts, size_t n) {
  std::vector<std::string> out;
  uint64_t r = 12345;
  auto next = [&] { return r = r * 6364136223846793005ull + 1442695040888963407ull, r >> 33; };
  for (const std::string& s : texts) {
    if (out.size() >= n) break;
    size_t i = s.find_first_of(
        "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94"
        "\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9"
        "\xaa\xab\xac\xad\xae\xaf\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf");
    if (i == std::string::npos) continue;
    std::string c = s.substr(0, std::min(s.size(), i + 1 + next() % 200));
    c = c.substr(next() % std::max<size_t>(1, std::min<size_t>(i + 1, 40)));
    c.insert(c.begin() + next() % (c.size() + 1), static_cast<char>(0x80 + next() % 128));
    out.push_back(c);
  }
  return out;
}

struct Corpus {
  std::vector<std::string> texts;  // edge cases, cut texts, then judgments
  size_t n_edge = 0, n_judgments = 0;
  size_t judgment_bytes = 0;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    const std::vector<std::string> judg = judgment_texts();
    c.texts = edge_cases();
    for (std::string& s : cut_texts(judg, 60)) c.texts.push_back(std::move(s));
    c.n_edge = c.texts.size();
    c.texts.insert(c.texts.end(), judg.begin(), judg.end());
    c.n_judgments = judg.size();
    for (const auto& s : judg) c.judgment_bytes += s.size();
    return c;
  }();
  return c;
}

std::vector<std::string> first(const std::vector<std::string>& v, size_t n) {
  return {v.begin(), v.begin() + std::min(n, v.size())};
}

std::string write_texts(const TempDir& d, const std::vector<std::string>& texts,
                        const std::string& name = "texts.json") {
  json hex = json::array();
  static const char* digits = "0123456789abcdef";
  for (const std::string& s : texts) {
    std::string h;
    for (unsigned char c : s) h += digits[c >> 4], h += digits[c & 15];
    hex.push_back(h);
  }
  return d.write(name, json({{"hex", hex}}).dump());
}

struct Reference {
  std::string error;
  std::vector<Ids> ids, ids_special;
  std::vector<int> missing_bytes;
};

// tokenizers' ids of the texts for each tokenizer.json.
std::vector<Reference> hf_encode(const TempDir& d, const std::string& texts, const std::vector<std::string>& toks,
                                 int special_limit = 300) {
  std::string args = "encode " + texts + " " + d.file("ref.json");
  for (const auto& t : toks) args += " " + t;
  reference(args + " --special-limit " + std::to_string(special_limit));
  const json j = json::parse(test::slurp(d.file("ref.json")));
  std::vector<Reference> out;
  for (const json& r : j["results"]) {
    Reference x;
    if (!r["error"].is_null()) x.error = r["error"];
    x.ids = r["ids"].get<std::vector<Ids>>();
    x.ids_special = r["ids_special"].get<std::vector<Ids>>();
    x.missing_bytes = r["missing_bytes"].get<std::vector<int>>();
    out.push_back(std::move(x));
  }
  return out;
}

// Every text's ids equal the reference's; the failure names the first few texts that differ.
::testing::AssertionResult same_ids(const Tokenizer& tok, const std::vector<std::string>& texts,
                                    const std::vector<Ids>& ref) {
  if (ref.size() != texts.size())
    return ::testing::AssertionFailure() << ref.size() << " reference rows for " << texts.size() << " texts";
  size_t bad = 0;
  std::string report;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Ids ours = tok.encode(texts[i]);
    if (ours == ref[i]) continue;
    if (++bad <= 3) {
      size_t k = 0;
      while (k < ours.size() && k < ref[i].size() && ours[k] == ref[i][k]) ++k;
      report += "\n  text " + std::to_string(i) + " \"" + escaped(texts[i]) + "\": first difference at id " +
                std::to_string(k) + " of " + std::to_string(ref[i].size()) + ": ours";
      for (size_t q = k; q < std::min(ours.size(), k + 6); ++q) report += " " + std::to_string(ours[q]);
      report += " | reference";
      for (size_t q = k; q < std::min(ref[i].size(), k + 6); ++q) report += " " + std::to_string(ref[i][q]);
    }
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << texts.size() << " texts differ:" << report;
  return ::testing::AssertionSuccess() << texts.size() << " texts identical";
}

bool uses_missing_byte(const std::string& s, const std::vector<int>& missing) {
  for (unsigned char c : s)
    if (std::find(missing.begin(), missing.end(), c) != missing.end()) return true;
  return false;
}

bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// decode(encode(x)) == x for valid UTF-8 texts whose bytes are all in the vocabulary.
void expect_decode_inverts_encode(const Tokenizer& tok, const std::vector<std::string>& texts,
                                  const std::vector<int>& missing) {
  size_t checked = 0, bad = 0;
  for (const std::string& s : texts) {
    if (!valid_utf8(s) || uses_missing_byte(s, missing)) continue;
    ++checked;
    if (tok.decode(tok.encode(s)) != s && ++bad <= 3)
      ADD_FAILURE() << "decode(encode(x)) != x for \"" << escaped(s) << "\"";
  }
  EXPECT_EQ(bad, 0u) << "of " << checked;
  EXPECT_GT(checked, texts.size() / 2);
}

BpeSpec read_spec(const std::string& path) {
  const json j = json::parse(test::slurp(path));
  BpeSpec s;
  s.tokens = j["tokens"].get<std::vector<std::string>>();
  s.merges = j["merges"].get<std::vector<std::string>>();
  s.token_types = j["token_types"].get<std::vector<int32_t>>();
  s.bos_id = j["bos_id"], s.eos_id = j["eos_id"], s.pad_id = j["pad_id"], s.unk_id = j["unk_id"];
  s.add_bos = j["add_bos"], s.add_eos = j["add_eos"];
  s.pre = j["pre"];
  return s;
}

// ---- SmolLM2 -----------------------------------------------------------------------------------------

struct BpeSmolLM2 : ::testing::Test {
  TempDir d;
  std::string dir = d.file("smollm2");
  BpeSpec spec;
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(test::smollm2_gguf())) << test::smollm2_gguf() << " (scripts/get_smollm2.sh)";
    reference("gguf-dump " + test::smollm2_gguf() + " " + dir);
    spec = read_spec(dir + "/spec.json");
  }
};

TEST_F(BpeSmolLM2, GgufVocabularyAndPublishedTokenizerJsonGiveHuggingFaceIds) {
  EXPECT_EQ(spec.pre, "smollm");
  ASSERT_EQ(spec.tokens.size(), 49152u);
  EXPECT_EQ(spec.merges.size(), 48900u);
  const Corpus& c = corpus();
  const auto ref = hf_encode(d, write_texts(d, c.texts), {dir + "/tokenizer.json"});
  ASSERT_EQ(ref[0].error, "");
  EXPECT_EQ(ref[0].missing_bytes.size(), 21u);  // SmolLM2's alphabet lacks 21 bytes: dropped, as tokenizers does

  const auto from_gguf = make_bpe_tokenizer(spec, "smollm2.gguf");
  const auto from_json = load_bpe_tokenizer(dir + "/tokenizer.json");  // with the tokenizer_config.json beside it
  for (const Tokenizer* t : {from_gguf.get(), from_json.get()}) {
    EXPECT_EQ(t->kind(), "bpe");
    EXPECT_EQ(t->vocab_size(), 49152);
    EXPECT_EQ(t->bos_id(), 1);  // <|im_start|>
    EXPECT_EQ(t->eos_id(), 2);  // <|im_end|>
    EXPECT_EQ(t->pad_id(), 2);
    EXPECT_FALSE(t->add_bos());
    EXPECT_FALSE(t->add_eos());
    EXPECT_TRUE(same_ids(*t, c.texts, ref[0].ids));
  }
  std::printf("[ SmolLM2  ] %zu texts (%zu edge cases and cut texts, %zu judgment texts) identical to tokenizers\n",
              c.texts.size(), c.n_edge, c.n_judgments);
  // The ByteLevel post-processor adds nothing: model input is the ids (an empty text gets EOS).
  for (size_t i = 0; i < ref[0].ids_special.size(); ++i) {
    bool cut = true;
    const Ids in = from_gguf->encode_for_model(c.texts[i], 1 << 20, &cut);
    EXPECT_EQ(in, ref[0].ids_special[i].empty() ? Ids{2} : ref[0].ids_special[i]) << i;
  }
  expect_decode_inverts_encode(*from_gguf, c.texts, ref[0].missing_bytes);
  EXPECT_EQ(from_gguf->encode("<|im_start|>user\nhi<|im_end|>"), (Ids{1, 4093, 198, 6004, 2}));
}

TEST_F(BpeSmolLM2, LongTextsEncodeFromASuffixExactly) {
  const auto tok = make_bpe_tokenizer(spec, "smollm2.gguf");
  EXPECT_TRUE(tok->starts_token_at_space_letter());
  test::expect_long_text_encoding_exact(*tok, test::long_documents());
}

TEST_F(BpeSmolLM2, SpeedOnOneCoreAndThreadSafety) {
  const Corpus& c = corpus();
  const std::vector<std::string> judg(c.texts.begin() + c.n_edge, c.texts.end());
  const auto tok = make_bpe_tokenizer(spec, "smollm2.gguf");
  std::vector<Ids> first_pass;
  for (int pass = 0; pass < 2; ++pass) {
    size_t tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::string& s : judg) {
      Ids ids = tok->encode(s);
      tokens += ids.size();
      if (pass == 0) first_pass.push_back(std::move(ids));
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ SmolLM2  ] encode, one core, %s word cache: %.1f MB in %.2f s = %.2f MB/s, %.2f M tokens/s\n",
                pass ? "warm" : "cold", c.judgment_bytes / 1e6, sec, c.judgment_bytes / 1e6 / sec, tokens / 1e6 / sec);
  }
  // Concurrent encodes (each thread fills its own word cache) give the same ids.
  std::vector<std::thread> threads;
  std::vector<size_t> bad(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < judg.size(); i += 2) bad[t] += tok->encode(judg[i]) != first_pass[i];
    });
  for (auto& th : threads) th.join();
  for (size_t b : bad) EXPECT_EQ(b, 0u);
}

// The word cache belongs to one tokenizer: two tokenizers with different merges, used in turn on one
// thread (and a new one made after one is destroyed, possibly at its address), each give their own ids;
// more distinct words than the cache holds (it empties itself) change nothing either.
TEST_F(BpeSmolLM2, WordCacheIsPerTokenizerAndBounded) {
  const Corpus& c = corpus();
  const std::vector<std::string> texts = first(c.texts, c.n_edge + 600);
  BpeSpec fewer = spec;
  fewer.merges.resize(2000);  // same vocabulary, fewer merges: most words split differently
  auto encode_all = [&](const Tokenizer& t) {
    std::vector<Ids> out;
    for (const std::string& s : texts) out.push_back(t.encode(s));
    return out;
  };
  std::vector<Ids> full_alone, fewer_alone;  // references, each from a thread of its own (a fresh cache)
  std::thread([&] { full_alone = encode_all(*make_bpe_tokenizer(spec, "full")); }).join();
  std::thread([&] { fewer_alone = encode_all(*make_bpe_tokenizer(fewer, "fewer")); }).join();
  size_t differ = 0;
  for (size_t i = 0; i < texts.size(); ++i) differ += full_alone[i] != fewer_alone[i];
  ASSERT_GT(differ, texts.size() / 2);  // otherwise the test could not see a cache mix-up
  const auto a = make_bpe_tokenizer(spec, "full");
  const auto b = make_bpe_tokenizer(fewer, "fewer");
  size_t bad = 0;
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < texts.size(); ++i) {
      bad += a->encode(texts[i]) != full_alone[i];
      bad += b->encode(texts[i]) != fewer_alone[i];
    }
  EXPECT_EQ(bad, 0u);
  for (int round = 0; round < 3; ++round) {  // destroyed and remade, alternating specs
    const auto t = make_bpe_tokenizer(round % 2 ? fewer : spec, "remade");
    const std::vector<Ids>& want = round % 2 ? fewer_alone : full_alone;
    for (size_t i = 0; i < texts.size(); ++i) bad += t->encode(texts[i]) != want[i];
  }
  EXPECT_EQ(bad, 0u);
  // 300,000 distinct words (a thread's cache grows, rehashing, to 131,072 words, then empties itself),
  // encoded twice, in one text and one by one: every word's ids are the same each time.
  Rng r(7);
  std::vector<std::string> words;
  std::string text;
  for (int i = 0; i < 300000; ++i) {
    std::string w = " ";
    const int n = 3 + static_cast<int>(r.uniform() * 8);
    for (int k = 0; k < n; ++k) w += static_cast<char>('a' + static_cast<int>(r.uniform() * 26));
    words.push_back(w);
    text += w;
  }
  const Ids whole = a->encode(text);
  Ids one_by_one;
  for (int pass = 0; pass < 2; ++pass) {
    Ids joined;
    for (const std::string& w : words) {
      const Ids ids = a->encode(w);
      joined.insert(joined.end(), ids.begin(), ids.end());
    }
    if (pass == 0) one_by_one = joined;
    EXPECT_EQ(joined, one_by_one);
  }
  EXPECT_EQ(whole, one_by_one);  // " word" pieces split alike inside one text and alone
  EXPECT_EQ(a->encode(text), whole);
}

TEST_F(BpeSmolLM2, SavedTokenizerJsonLoadsInHuggingFaceAndCairnWithTheSameIds) {
  const Corpus& c = corpus();
  const std::vector<std::string> texts = first(c.texts, c.n_edge + 2500);
  const auto tok = make_bpe_tokenizer(spec, "smollm2.gguf");
  std::filesystem::create_directories(d.file("run"));
  const std::string saved = d.file("run/tokenizer.json");
  tok->save(saved);
  ASSERT_TRUE(std::filesystem::exists(d.file("run/tokenizer_config.json")));
  const json cfg = json::parse(test::slurp(d.file("run/tokenizer_config.json")));
  EXPECT_EQ(cfg["bos_token"], "<|im_start|>");
  EXPECT_EQ(cfg["eos_token"], "<|im_end|>");
  EXPECT_EQ(cfg["pad_token"], "<|im_end|>");
  const auto ref = hf_encode(d, write_texts(d, texts), {saved, dir + "/tokenizer.json"});
  ASSERT_EQ(ref[0].error, "");
  EXPECT_EQ(ref[0].ids, ref[1].ids);  // the saved file tokenizes as the published one
  EXPECT_TRUE(same_ids(*tok, texts, ref[0].ids));
  const auto again = load_bpe_tokenizer(saved);
  EXPECT_TRUE(same_ids(*again, texts, ref[0].ids));
  EXPECT_EQ(again->vocab_size(), 49152);
  EXPECT_EQ(again->bos_id(), 1);
  EXPECT_EQ(again->eos_id(), 2);
  EXPECT_EQ(again->pad_id(), 2);
  EXPECT_FALSE(again->add_bos());
  // Saving what was loaded writes the same file.
  again->save(d.file("run/tokenizer2.json"));
  EXPECT_EQ(test::slurp(saved), test::slurp(d.file("run/tokenizer2.json")));
  std::printf("[ SmolLM2  ] saved tokenizer.json: %zu texts identical in tokenizers and cairn\n", texts.size());
}

TEST_F(BpeSmolLM2, TransformersOwnGgufConversion) {
  // transformers 4.44.2 converts this GGUF's tokenizer itself (GGUFLlamaConverter), but without
  // SmolLM's Digits pre-tokenizer (plain ByteLevel), with unk_token + byte_fallback (bytes outside
  // SmolLM2's alphabet become <|endoftext|> instead of being dropped) and eos = bos = <|im_start|>. Its
  // ids must equal the published configuration's on every other text. Checked and reported.
  const Corpus& c = corpus();
  std::vector<std::string> texts;
  for (const std::string& s : first(c.texts, c.n_edge + 1500))
    if (valid_utf8(s)) texts.push_back(s);
  const std::string tf = write_texts(d, texts);
  reference("transformers-gguf " + test::smollm2_gguf() + " " + tf + " " + d.file("tf.json"));
  const json j = json::parse(test::slurp(d.file("tf.json")));
  const auto ref = hf_encode(d, tf, {dir + "/tokenizer.json"});
  ASSERT_TRUE(j["loaded"].get<bool>()) << j["error"];
  const auto ids = j["ids"].get<std::vector<Ids>>();
  const auto numeric = j["numeric"].get<std::vector<bool>>();
  size_t agree = 0, other = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const bool explained = numeric[i] || uses_missing_byte(texts[i], ref[0].missing_bytes);
    other += !explained;
    if (ids[i] == ref[0].ids[i])
      ++agree;
    else
      EXPECT_TRUE(explained) << "differs on a text without numbers or missing bytes: \"" << escaped(texts[i]) << "\"";
  }
  EXPECT_GT(other, 100u);
  std::printf(
      "[ SmolLM2  ] transformers 4.44.2 loads the GGUF tokenizer (%s, pre_tokenizer %s, bos %s eos %s); "
      "it agrees with the published configuration on %zu of %zu texts, on all %zu without numbers or "
      "bytes outside the alphabet\n",
      j["class"].get<std::string>().c_str(), j["pre_tokenizer"]["type"].get<std::string>().c_str(),
      j["bos"].dump().c_str(), j["eos"].dump().c_str(), agree, texts.size(), other);
}

// ---- trained GPT-2-style and Llama-3-style tokenizers --------------------------------------------------

TEST(BpeGpt2Style, TrainedTokenizerJsonMatchesHuggingFaceAndRoundTrips) {
  TempDir d;
  const std::string path = d.file("tokenizer.json");
  reference("train gpt2 " + test::source_dir() + "/data/alpaca-eval/train.jsonl.gz 2000 " + path);
  const Corpus& c = corpus();
  const auto tok = load_bpe_tokenizer(path);
  EXPECT_EQ(tok->vocab_size(), 2000);
  EXPECT_EQ(tok->bos_id(), 0);  // <|endoftext|>, by name
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_FALSE(tok->add_bos());
  std::filesystem::create_directories(d.file("saved"));
  tok->save(d.file("saved/tokenizer.json"));
  const auto ref = hf_encode(d, write_texts(d, c.texts), {path, d.file("saved/tokenizer.json")});
  ASSERT_EQ(ref[0].error, "");
  ASSERT_EQ(ref[1].error, "");
  EXPECT_TRUE(same_ids(*tok, c.texts, ref[0].ids));
  EXPECT_EQ(ref[1].ids, ref[0].ids);
  EXPECT_TRUE(same_ids(*load_bpe_tokenizer(d.file("saved/tokenizer.json")), c.texts, ref[0].ids));
  EXPECT_TRUE(ref[0].missing_bytes.empty());
  expect_decode_inverts_encode(*tok, c.texts, {});
  std::printf("[ GPT-2    ] %zu texts identical to tokenizers (and through save())\n", c.texts.size());
  EXPECT_TRUE(tok->starts_token_at_space_letter());
  test::expect_long_text_encoding_exact(*tok, test::long_documents());
}

TEST(BpeLlama3Style, SplitRegexIgnoreMergesAndBosTemplateMatchHuggingFace) {
  TempDir d;
  const std::string path = d.file("tokenizer.json");
  reference("train llama3 " + test::source_dir() + "/data/alpaca-eval/train.jsonl.gz 3000 " + path);
  const Corpus& c = corpus();
  const auto tok = load_bpe_tokenizer(path);
  EXPECT_TRUE(tok->add_bos());  // TemplateProcessing "<|begin_of_text|> $A"
  EXPECT_FALSE(tok->add_eos());
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);  // <|end_of_text|>, by name
  std::filesystem::create_directories(d.file("saved"));
  tok->save(d.file("saved/tokenizer.json"));
  const auto ref = hf_encode(d, write_texts(d, c.texts), {path, d.file("saved/tokenizer.json")}, 1000);
  ASSERT_EQ(ref[0].error, "");
  ASSERT_EQ(ref[1].error, "");
  EXPECT_TRUE(same_ids(*tok, c.texts, ref[0].ids));
  EXPECT_EQ(ref[1].ids, ref[0].ids);
  EXPECT_EQ(ref[1].ids_special, ref[0].ids_special);
  const auto again = load_bpe_tokenizer(d.file("saved/tokenizer.json"));
  EXPECT_TRUE(same_ids(*again, c.texts, ref[0].ids));
  EXPECT_TRUE(again->add_bos());
  EXPECT_EQ(again->bos_id(), 0);
  for (size_t i = 0; i < ref[0].ids_special.size(); ++i) {
    bool cut = true;
    EXPECT_EQ(tok->encode_for_model(c.texts[i], 1 << 20, &cut), ref[0].ids_special[i]) << i;
  }
  expect_decode_inverts_encode(*tok, c.texts, {});
  std::printf("[ Llama-3  ] %zu texts identical to tokenizers (and through save()); %zu with the BOS template\n",
              c.texts.size(), ref[0].ids_special.size());
}

// ---- variants: every Split behaviour, Digits, add_prefix_space, added-token flags, unk ------------------

TEST(BpeVariants, PreTokenizerBehavioursAndAddedTokenFlagsMatchHuggingFace) {
  TempDir d;
  const std::string base_path = d.file("base.json");
  reference("train gpt2 " + test::source_dir() + "/data/alpaca-eval/valid.jsonl.gz 1200 " + base_path);
  const json base = json::parse(test::slurp(base_path));
  auto bytelevel = [](bool prefix, bool regex) {
    return json{{"type", "ByteLevel"}, {"add_prefix_space", prefix}, {"trim_offsets", true}, {"use_regex", regex}};
  };
  auto split = [](const std::string& kind, const std::string& pat, const std::string& behavior, bool invert) {
    return json{{"type", "Split"}, {"pattern", {{kind, pat}}}, {"behavior", behavior}, {"invert", invert}};
  };
  auto seq = [](std::vector<json> steps) { return json{{"type", "Sequence"}, {"pretokenizers", steps}}; };
  std::vector<std::pair<std::string, json>> variants;
  auto with_pre = [&](const std::string& name, const json& pre) {
    json j = base;
    j["pre_tokenizer"] = pre;
    variants.emplace_back(name, j);
  };
  with_pre("prefix-space", bytelevel(true, true));
  with_pre("removed", seq({split("Regex", "\\s+", "Removed", false), bytelevel(false, true)}));
  with_pre("merged-previous", seq({split("Regex", "[0-9]+|\\n", "MergedWithPrevious", false), bytelevel(true, true)}));
  with_pre("merged-next", seq({split("String", ", ", "MergedWithNext", false), bytelevel(false, true)}));
  with_pre("contiguous", seq({split("Regex", "\\p{P}", "Contiguous", false),
                              json{{"type", "Digits"}, {"individual_digits", false}}, bytelevel(true, false)}));
  with_pre("inverted", seq({split("Regex", "[aeiou]+", "Isolated", true), split("Regex", "\\s", "Removed", true),
                            bytelevel(false, false)}));
  with_pre("empty-matches", seq({split("Regex", "x*", "Isolated", false),
                                 split("Regex", "(?=e)", "MergedWithNext", false), bytelevel(false, true)}));
  with_pre("anchors", seq({split("Regex", "^.|.$", "Isolated", false), bytelevel(false, true)}));
  {
    json j = base;
    j["model"]["ignore_merges"] = true;
    variants.emplace_back("ignore-merges", j);
  }
  {
    // Added tokens with every flag; ids follow the vocabulary as tokenizers assigns them.
    json j = base;
    int next = static_cast<int>(j["model"]["vocab"].size());
    auto add = [&](const std::string& content, bool special, bool single, bool l, bool r, bool norm) {
      const json& vocab = j["model"]["vocab"];
      const int id = vocab.contains(content) ? vocab[content].get<int>() : next++;
      j["added_tokens"].push_back({{"id", id},
                                   {"content", content},
                                   {"single_word", single},
                                   {"lstrip", l},
                                   {"rstrip", r},
                                   {"normalized", norm},
                                   {"special", special}});
    };
    add("<|im_start|>", true, false, false, false, false);
    add("<|im_end|>", true, false, true, true, false);
    add("<sep>", true, false, true, false, false);
    add("[x]", false, false, false, true, true);
    add("word", false, true, false, false, true);
    add("ab", false, false, false, false, true);
    add("abab", false, false, false, false, false);
    add("b!", false, false, false, false, false);  // matched before the normalized "ab": "ab!" → a, b!
    add("<s>", false, true, true, true, false);
    add("\u4e16\u754c", false, false, false, false, true);
    variants.emplace_back("added-flags", j);
  }
  for (bool fuse : {false, true}) {
    // Bytes 0x04 and 0x06 (Ą, Ć in the byte mapping) out of the vocabulary: unk_token takes them.
    json j = base;
    json vocab = json::object();
    for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it)
      if (it.key().find("\u0104") == std::string::npos && it.key().find("\u0106") == std::string::npos)
        vocab[it.key()] = it.value();
    json merges = json::array();
    for (const json& m : j["model"]["merges"]) {
      const std::string s = m;
      if (s.find("\u0104") == std::string::npos && s.find("\u0106") == std::string::npos) merges.push_back(m);
    }
    j["model"]["vocab"] = vocab;
    j["model"]["merges"] = merges;
    j["model"]["unk_token"] = "<|endoftext|>";
    j["model"]["fuse_unk"] = fuse;
    variants.emplace_back(fuse ? "unk-fused" : "unk", j);
  }
  const Corpus& c = corpus();
  std::vector<std::string> texts = first(c.texts, c.n_edge + 400);
  for (const char* s :
       {"a [x]   b", "x  <sep>y", "word words sword word.", "abababab ab", "ab! xab!", "<s>x <s> y", "say <s>",
        "hello <|im_end|>  \n there", "\u4e16\u754c\u4e16", "<|im_start|>system\n", "e\u0301word", "\x04\x04\x06a\x04"})
    texts.push_back(s);
  std::vector<std::string> paths;
  for (const auto& [name, j] : variants) paths.push_back(d.write(name + ".json", j.dump()));
  const auto ref = hf_encode(d, write_texts(d, texts), paths);
  for (size_t v = 0; v < variants.size(); ++v) {
    SCOPED_TRACE(variants[v].first);
    ASSERT_EQ(ref[v].error, "");
    const auto tok = load_bpe_tokenizer(paths[v]);
    EXPECT_TRUE(same_ids(*tok, texts, ref[v].ids));
    tok->save(d.file("saved-" + variants[v].first + ".json"));
    EXPECT_TRUE(same_ids(*load_bpe_tokenizer(d.file("saved-" + variants[v].first + ".json")), texts, ref[v].ids));
  }
  std::printf("[ variants ] %zu tokenizer variants × %zu texts identical to tokenizers\n", variants.size(),
              texts.size());
}

// ---- every tokenizer.ggml.pre name: make_bpe_tokenizer → save() → tokenizers -------------------------

TEST(BpeSpecPre, EveryPreNameTokenizesAsItsSavedTokenizerJsonInHuggingFace) {
  TempDir d;
  const std::string base_path = d.file("base.json");
  reference("train gpt2 " + test::source_dir() + "/data/alpaca-eval/valid.jsonl.gz 1500 " + base_path);
  const json base = json::parse(test::slurp(base_path));
  BpeSpec spec;
  spec.tokens.resize(base["model"]["vocab"].size());
  for (auto it = base["model"]["vocab"].begin(); it != base["model"]["vocab"].end(); ++it)
    spec.tokens.at(it.value().get<size_t>()) = it.key();
  spec.merges = base["model"]["merges"].get<std::vector<std::string>>();
  spec.token_types.assign(spec.tokens.size(), 1);
  spec.token_types[0] = 3;  // <|endoftext|>
  const std::vector<std::string> pres = {"gpt2", "llama-bpe", "smollm", "qwen2", "default"};
  std::vector<std::unique_ptr<Tokenizer>> toks;
  std::vector<std::string> paths;
  for (const std::string& pre : pres) {
    BpeSpec s = spec;
    s.pre = pre;
    s.add_bos = pre == "llama-bpe", s.bos_id = 0;
    toks.push_back(make_bpe_tokenizer(s, pre + ".gguf"));
    std::filesystem::create_directories(d.file(pre));
    paths.push_back(d.file(pre + "/tokenizer.json"));
    toks.back()->save(paths.back());
  }
  const Corpus& c = corpus();
  const std::vector<std::string> texts = first(c.texts, c.n_edge + 1500);
  const auto ref = hf_encode(d, write_texts(d, texts), paths);
  for (size_t i = 0; i < pres.size(); ++i) {
    SCOPED_TRACE(pres[i]);
    ASSERT_EQ(ref[i].error, "");
    EXPECT_TRUE(same_ids(*toks[i], texts, ref[i].ids));
    EXPECT_TRUE(same_ids(*load_bpe_tokenizer(paths[i]), texts, ref[i].ids));
    for (size_t k = 0; k < ref[i].ids_special.size(); ++k) {
      bool cut = true;
      const Ids in = toks[i]->encode_for_model(texts[k], 1 << 20, &cut);
      EXPECT_EQ(in, ref[i].ids_special[k].empty() ? Ids{0} : ref[i].ids_special[k]) << k;
    }
  }
  for (size_t i = 1; i < pres.size(); ++i) EXPECT_NE(ref[i].ids, ref[0].ids) << pres[i];  // they do differ
  std::printf("[ pre      ] %zu tokenizer.ggml.pre names × %zu texts identical to tokenizers\n", pres.size(),
              texts.size());
}

// ---- small hand-made tokenizers: BOS/EOS/pad rules, invalid UTF-8, hostile input ----------------------

std::string byte_char(int b) {
  int n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    const uint32_t cp = printable ? x : 256 + n++;
    if (x == b) {
      std::string s;
      if (cp < 0x80)
        s += static_cast<char>(cp);
      else
        s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
      return s;
    }
  }
  return "";
}

// All 256 byte symbols, a few merges, then the given special tokens.
json tiny(const std::vector<std::string>& specials = {"<s>", "</s>", "<pad>"}) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  int id = 256;
  const std::string sp = byte_char(' ');
  json merges = json::array();
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {sp, "t"}, {"h", "e"}, {sp + "t", "he"}, {"i", "n"}, {sp, "a"}, {"e", "r"}}) {
    merges.push_back(a + " " + b);
    vocab[a + b] = id++;
  }
  json added = json::array();
  for (const auto& s : specials) {
    vocab[s] = id;
    added.push_back({{"id", id++},
                     {"content", s},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(BpeTokenizer, BosEosPadFromPostProcessorConfigOrCommonNames) {
  TempDir d;
  auto t = load_bpe_tokenizer(d.write("a.json", tiny().dump()));
  EXPECT_EQ(t->bos_id(), 262);  // <s>
  EXPECT_EQ(t->eos_id(), 263);  // </s>
  EXPECT_EQ(t->pad_id(), 264);  // <pad>
  EXPECT_FALSE(t->add_bos());
  EXPECT_EQ(load_bpe_tokenizer(d.write("b.json", tiny({"<|endoftext|>"}).dump()))->pad_id(), 262);  // pad = eos
  EXPECT_THROW(load_bpe_tokenizer(d.write("c.json", tiny({"<x>"}).dump())), DataError);             // no EOS at all
  // tokenizer_config.json beside the file.
  std::filesystem::create_directories(d.file("cfg"));
  d.write("cfg/tokenizer.json", tiny().dump());
  d.write("cfg/tokenizer_config.json",
          R"({"bos_token": "<pad>", "eos_token": {"content": "<s>", "special": true}, "pad_token": null})");
  t = load_bpe_tokenizer(d.file("cfg/tokenizer.json"));
  EXPECT_EQ(t->bos_id(), 264);
  EXPECT_EQ(t->eos_id(), 262);
  EXPECT_EQ(t->pad_id(), 264);  // null: by name
  d.write("cfg/tokenizer_config.json", R"({"eos_token": "<nope>"})");
  EXPECT_THROW(load_bpe_tokenizer(d.file("cfg/tokenizer.json")), DataError);
  d.write("cfg/tokenizer_config.json", "{not json");
  EXPECT_THROW(load_bpe_tokenizer(d.file("cfg/tokenizer.json")), DataError);
  // The post-processor decides add_bos/add_eos and wins over the config.
  json j = tiny();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 0}}],
      "pair": [], "special_tokens": {"</s>": {"id": "</s>", "ids": [263], "tokens": ["</s>"]},
                                     "<s>": {"id": "<s>", "ids": [262], "tokens": ["<s>"]}}})");
  d.write("cfg/tokenizer_config.json", R"({"bos_token": "<pad>", "eos_token": "<pad>", "pad_token": "<pad>"})");
  d.write("cfg/tokenizer.json", j.dump());
  t = load_bpe_tokenizer(d.file("cfg/tokenizer.json"));
  EXPECT_TRUE(t->add_bos());
  EXPECT_TRUE(t->add_eos());
  EXPECT_EQ(t->bos_id(), 263);
  EXPECT_EQ(t->eos_id(), 262);
  EXPECT_EQ(t->pad_id(), 264);
  bool cut = false;
  EXPECT_EQ(t->encode_for_model("the", 100, &cut), (Ids{263, 116, 257, 262}));
  j["post_processor"] = json::parse(R"({"type": "RobertaProcessing", "sep": ["</s>", 263], "cls": ["<s>", 262],
                                        "trim_offsets": true, "add_prefix_space": false})");
  t = load_bpe_tokenizer(d.write("r.json", j.dump()));
  EXPECT_TRUE(t->add_bos() && t->add_eos());
  EXPECT_EQ(t->bos_id(), 262);
  // make_bpe_tokenizer: the spec's ids first.
  BpeSpec s;
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_char(b));
  s.tokens.push_back("<|endoftext|>");
  s.tokens.push_back("<|im_end|>");
  s.token_types.assign(258, 1);
  s.token_types[256] = s.token_types[257] = 3;
  s.pre = "gpt2";
  auto g = make_bpe_tokenizer(s, "spec");
  EXPECT_EQ(g->bos_id(), 256);
  EXPECT_EQ(g->eos_id(), 257);
  EXPECT_EQ(g->pad_id(), 257);
  s.bos_id = 257, s.eos_id = 256, s.pad_id = 65, s.add_bos = true;
  g = make_bpe_tokenizer(s, "spec");
  EXPECT_EQ(g->bos_id(), 257);
  EXPECT_EQ(g->eos_id(), 256);
  EXPECT_EQ(g->pad_id(), 65);
  EXPECT_EQ(g->encode_for_model("A<|endoftext|>", 10, &cut), (Ids{257, 65, 256}));
}

TEST(BpeTokenizer, InvalidUtf8IsReplacedNeverACrash) {
  TempDir d;
  const auto t = load_bpe_tokenizer(d.write("t.json", tiny().dump()));
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(t->encode("\xff"), t->encode(fffd));
  EXPECT_EQ(t->encode("a\xe2\x82z"), t->encode("a" + fffd + "z"));      // a truncated sequence: one U+FFFD
  EXPECT_EQ(t->encode("\xed\xa0\x80"), t->encode(fffd + fffd + fffd));  // a surrogate: one per byte
  EXPECT_EQ(t->encode("\xf0\x9f\x98"), t->encode(fffd));
  EXPECT_EQ(t->decode(t->encode("x\xc3(y")), "x" + fffd + "(y");
  uint64_t r = 7;
  for (int i = 0; i < 3000; ++i) {
    std::string s(r % 40, '\0');
    for (char& c : s) r = r * 6364136223846793005ull + 1442695040888963407ull, c = static_cast<char>(r >> 56);
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    for (int32_t id : t->encode(s)) ASSERT_TRUE(id >= 0 && id < t->vocab_size());
    EXPECT_TRUE(valid_utf8(t->decode(t->encode(s))));
  }
  EXPECT_EQ(t->decode({-5, 1 << 30, 116}), "t");  // ids that are no token are skipped
}

TEST(BpeTokenizer, HostileTokenizerJsonIsADataError) {
  TempDir d;
  const std::string good = tiny().dump();
  auto edit = [](const std::function<void(json&)>& f) {
    json j = tiny();
    f(j);
    return j.dump();
  };
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += '[';
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"truncated", good.substr(0, good.size() / 2)},
      {"not an object", "[1, 2, 3]"},
      {"deep nesting", deep},
      {"invalid UTF-8 in a string", "{\"version\": \"1.0\xff\"}"},
      {"version", edit([](json& j) { j["version"] = "2.0"; })},
      {"no model", edit([](json& j) { j.erase("model"); })},
      {"WordPiece model", edit([](json& j) { j["model"]["type"] = "WordPiece"; })},
      {"Unigram model", edit([](json& j) {
         j["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
       })},
      {"vocab array", edit([](json& j) {
         j["model"]["vocab"] = json::array({"a", "b"});
       })},
      {"vocab id string", edit([](json& j) { j["model"]["vocab"]["a"] = "97"; })},
      {"vocab id negative", edit([](json& j) { j["model"]["vocab"]["a"] = -1; })},
      {"vocab id huge", edit([](json& j) { j["model"]["vocab"]["zz"] = 1ll << 40; })},
      {"vocab ids sparse", edit([](json& j) { j["model"]["vocab"]["zz"] = (1 << 24) - 1; })},
      {"vocab id float", edit([](json& j) { j["model"]["vocab"]["a"] = 3.5; })},
      {"vocab id 1e30", edit([](json& j) { j["model"]["vocab"]["a"] = 1e30; })},
      {"vocab id duplicated", edit([](json& j) { j["model"]["vocab"]["zz"] = 97; })},
      {"merges object", edit([](json& j) { j["model"]["merges"] = json::object(); })},
      {"merge without space", edit([](json& j) { j["model"]["merges"].push_back("ab"); })},
      {"merge with two spaces", edit([](json& j) { j["model"]["merges"].push_back("a b c"); })},
      {"merge of unknown tokens", edit([](json& j) { j["model"]["merges"].push_back("xyz q"); })},
      {"merge result not in vocab", edit([](json& j) { j["model"]["merges"].push_back("q q"); })},
      {"merge of numbers", edit([](json& j) {
         j["model"]["merges"].push_back(json::array({1, 2}));
       })},
      {"byte_fallback", edit([](json& j) { j["model"]["byte_fallback"] = true; })},
      {"dropout", edit([](json& j) { j["model"]["dropout"] = 0.1; })},
      {"subword prefix", edit([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; })},
      {"added_tokens object", edit([](json& j) { j["added_tokens"] = json::object(); })},
      {"added token without id", edit([](json& j) { j["added_tokens"][0].erase("id"); })},
      {"added token id out of range", edit([](json& j) { j["added_tokens"][0]["id"] = 1 << 25; })},
      {"added token content number", edit([](json& j) { j["added_tokens"][0]["content"] = 5; })},
      {"added token id not tokenizers'", edit([](json& j) { j["added_tokens"][0]["id"] = 300; })},
      {"added token twice", edit([](json& j) { j["added_tokens"].push_back(j["added_tokens"][0]); })},
      {"added token on another's id", edit([](json& j) {
         j["added_tokens"].push_back({{"id", 265}, {"content", "<new>"}});
         j["model"]["vocab"]["zz"] = 265;
       })},
      {"no pre_tokenizer", edit([](json& j) { j["pre_tokenizer"] = nullptr; })},
      {"Whitespace pre_tokenizer", edit([](json& j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       })},
      {"Metaspace pre_tokenizer", edit([](json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
       })},
      {"regex PCRE2 rejects", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "(("}}}, {"behavior", "Isolated"}, {"invert", false}},
               j["pre_tokenizer"]}}};
       })},
      {"unknown property", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{Foo}"}}}, {"behavior", "Isolated"}, {"invert", false}},
               j["pre_tokenizer"]}}};
       })},
      {"\\C", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "\\C"}}}, {"behavior", "Isolated"}, {"invert", false}},
               j["pre_tokenizer"]}}};
       })},
      {"Split behavior", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Bogus"}, {"invert", false}},
               j["pre_tokenizer"]}}};
       })},
      {"Split pattern", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Glob", "*"}}}, {"behavior", "Isolated"}, {"invert", false}},
               j["pre_tokenizer"]}}};
       })},
      {"ByteLevel not last", edit([](json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers", {j["pre_tokenizer"], {{"type", "Digits"}, {"individual_digits", true}}}}};
       })},
      {"no ByteLevel", edit([](json& j) {
         j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
       })},
      {"Sequence without list", edit([](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"}};
       })},
      {"NFC normalizer", edit([](json& j) {
         j["normalizer"] = {{"type", "NFC"}};
       })},
      {"Lowercase normalizer", edit([](json& j) {
         j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}};
       })},
      {"WordPiece decoder", edit([](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       })},
      {"template with two tokens before $A", edit([](json& j) {
         j["post_processor"] = json::parse(
             R"({"type": "TemplateProcessing", "pair": [],
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                            {"SpecialToken": {"id": "</s>", "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}],
                 "special_tokens": {"<s>": {"id": "<s>", "ids": [262], "tokens": ["<s>"]},
                                    "</s>": {"id": "</s>", "ids": [263], "tokens": ["</s>"]}}})");
       })},
      {"template naming an unknown token", edit([](json& j) {
         j["post_processor"] = json::parse(
             R"({"type": "TemplateProcessing", "pair": [], "special_tokens": {},
                 "single": [{"SpecialToken": {"id": "<q>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]})");
       })},
      {"template id out of range", edit([](json& j) {
         j["post_processor"] = json::parse(
             R"({"type": "TemplateProcessing", "pair": [],
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "special_tokens": {"<s>": {"id": "<s>", "ids": [99999], "tokens": ["<s>"]}}})");
       })},
      {"BertProcessing malformed", edit([](json& j) {
         j["post_processor"] = {{"type", "BertProcessing"}, {"sep", 5}};
       })},
      {"unknown post_processor", edit([](json& j) {
         j["post_processor"] = {{"type", "Mystery"}};
       })},
  };
  for (const auto& [name, text] : cases) {
    SCOPED_TRACE(name);
    const std::string f = d.write("hostile.json", text);
    try {
      load_bpe_tokenizer(f);
      ADD_FAILURE() << "loaded";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();  // names the file
    }
  }
  EXPECT_THROW(load_bpe_tokenizer(d.file("missing.json")), DataError);
  EXPECT_THROW(load_bpe_tokenizer(d.file("")), DataError);  // a directory
  {                                                         // absurdly large (sparse): refused before reading
    const std::string big = d.file("big.json");
    std::ofstream(big) << "{}";
    std::filesystem::resize_file(big, (uintmax_t(1) << 30) + 1);
    EXPECT_THROW(load_bpe_tokenizer(big), DataError);
  }
  // A regex PCRE2 accepts but that backtracks catastrophically: the encode is a DataError, not a hang.
  json j = tiny();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(a|aa)+$"}}}, {"behavior", "Isolated"}, {"invert", false}},
        j["pre_tokenizer"]}}};
  const auto t = load_bpe_tokenizer(d.write("slow.json", j.dump()));
  EXPECT_THROW(t->encode(std::string(60, 'a') + "!"), DataError);
  EXPECT_EQ(t->encode("aa").size(), 1u + 1u);
}

TEST(BpeTokenizer, HostileSpecsAreDataErrors) {
  BpeSpec ok;
  for (int b = 0; b < 256; ++b) ok.tokens.push_back(byte_char(b));
  ok.tokens.push_back("<|endoftext|>");
  ok.token_types.assign(257, 1);
  ok.token_types[256] = 3;
  ok.pre = "smollm";
  EXPECT_EQ(make_bpe_tokenizer(ok, "ok")->vocab_size(), 257);
  const std::vector<std::pair<std::string, std::function<void(BpeSpec&)>>> cases = {
      {"no tokens", [](BpeSpec& s) { s.tokens.clear(), s.token_types.clear(); }},
      {"duplicated token", [](BpeSpec& s) { s.tokens[5] = s.tokens[6]; }},
      {"token types size", [](BpeSpec& s) { s.token_types.pop_back(); }},
      {"token type 9", [](BpeSpec& s) { s.token_types[3] = 9; }},
      {"bos out of range", [](BpeSpec& s) { s.bos_id = 99999; }},
      {"eos negative", [](BpeSpec& s) { s.eos_id = -7; }},
      {"add_bos without bos", [](BpeSpec& s) { s.add_bos = true; }},
      {"unknown pre", [](BpeSpec& s) { s.pre = "tekken"; }},
      {"merge of unknown tokens", [](BpeSpec& s) { s.merges = {"xyz q"}; }},
      {"merge with two spaces", [](BpeSpec& s) { s.merges = {"a  b"}; }},
      {"merge result missing", [](BpeSpec& s) { s.merges = {"a b"}; }},
      {"invalid UTF-8 token", [](BpeSpec& s) { s.tokens[0] = "\xff"; }},
      {"no EOS", [](BpeSpec& s) { s.tokens[256] = "<x>"; }},
  };
  for (const auto& [name, f] : cases) {
    SCOPED_TRACE(name);
    BpeSpec s = ok;
    f(s);
    EXPECT_THROW(make_bpe_tokenizer(s, "spec.gguf"), DataError);
  }
}

}  // namespace
}  // namespace cairn
