// Tokenizer: training (including the degenerate inputs that crash SentencePiece's BPE trainer),
// encode_for_model's left truncation, determinism.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "cairn/data.h"
#include "cairn/tokenizer.h"
#include "long_text.h"
#include "test_tmpdir.h"

namespace cairn {
using test::TempDir;

static std::string corpus(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += nlohmann::json({{"prompt", "Question number " + std::to_string(i) + " about gardens and rivers?"},
                         {"chosen", "A helpful answer mentioning tomatoes, mountains and é ü 字."},
                         {"rejected", "No."}}).dump() + "\n";
  return s;
}

TEST(Tokenizer, TrainingLinesBreakDegenerateRunsAtCharBoundaries) {
  const std::string run(1000, '!');
  auto lines = tokenizer_training_lines("ok " + run + " 字字字");
  ASSERT_EQ(lines.size(), 1u);
  size_t longest = 0, cur = 0;
  for (char c : lines[0]) cur = c == ' ' ? 0 : cur + 1, longest = std::max(longest, cur);
  EXPECT_LE(longest, 64u);
  std::string many;
  for (int i = 0; i < 3000; ++i) many += "字";  // 3 bytes each: splits must not cut a character
  for (const auto& l : tokenizer_training_lines(many)) {
    EXPECT_LE(l.size(), 4096u);
    const int64_t spaces = std::count(l.begin(), l.end(), ' ');
    EXPECT_EQ((utf8_length(l) - spaces) * 3, static_cast<int64_t>(l.size()) - spaces);  // only whole characters
  }
}

TEST(Tokenizer, TrainsOnDegenerateTextEncodesAndTruncatesFromTheLeft) {
  TempDir d;
  std::string data = corpus(200);
  data += nlohmann::json({{"chosen", "+" + std::string(65000, '-')}, {"rejected", std::string(9000, '!')}}).dump() + "\n";
  const std::string f = d.write("p.jsonl", data);
  train_tokenizer({f}, d.file("a.model"), 400, "bpe");
  train_tokenizer({f}, d.file("b.model"), 400, "bpe");
  EXPECT_EQ(test::slurp(d.file("a.model")), test::slurp(d.file("b.model")));  // deterministic
  auto tok_ptr = load_sentencepiece(d.file("a.model"));
  const Tokenizer& tok = *tok_ptr;
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  bool cut = true;
  auto full = tok.encode_for_model("tomatoes and mountains", 1000, &cut);
  EXPECT_FALSE(cut);
  EXPECT_EQ(full.front(), 1);
  EXPECT_EQ(full.back(), 2);
  auto shortened = tok.encode_for_model("tomatoes and mountains", 4, &cut);
  EXPECT_TRUE(cut);
  ASSERT_EQ(shortened.size(), 4u);
  EXPECT_TRUE(std::equal(shortened.begin(), shortened.end(), full.end() - 4));  // the end is kept, EOS last
  EXPECT_FALSE(tok.encode(std::string(200000, '!')).empty());
  train_tokenizer({f}, d.file("u.model"), 320, "unigram");
  EXPECT_EQ(load_sentencepiece(d.file("u.model"))->vocab_size(), 320);
}

TEST(Tokenizer, MissingOrBogusModelIsADataError) {
  TempDir d;
  EXPECT_THROW(load_sentencepiece(d.file("none.model")), std::runtime_error);
  EXPECT_THROW(load_sentencepiece(d.write("bogus.model", "not a model")), std::runtime_error);
}

// A long text is tokenized from a token boundary near its end, with the result of tokenizing it all.
TEST(Tokenizer, LongTextsEncodeFromASuffixExactly) {
  TempDir d;
  const std::vector<std::string> docs = test::long_documents();
  std::string pairs;  // the tokenizer learns from the same kind of text
  for (size_t b = 0; b + 2000 < docs[0].size(); b += 2000)
    pairs += nlohmann::json({{"chosen", docs[0].substr(b, 1000)}, {"rejected", docs[0].substr(b + 1000, 1000)}}).dump() + "\n";
  train_tokenizer({d.write("p.jsonl", pairs)}, d.file("t.model"), 2000, "bpe", 20000);
  auto tok = load_sentencepiece(d.file("t.model"));
  EXPECT_TRUE(tok->starts_token_at_space_letter());
  test::expect_long_text_encoding_exact(*tok, docs);
}

}  // namespace cairn
