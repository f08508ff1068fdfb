// SentencePiece tokenizer wrapper. Model input = [BOS] + ids(text) + [EOS], left-truncated to
// max_seq_len (the end of the text, where the response is, is kept).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cairn {

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_path);  // DataError when missing or not a SentencePiece model
  ~Tokenizer();
  std::vector<int32_t> encode(const std::string& text) const;
  std::vector<int32_t> encode_for_model(const std::string& text, int max_seq_len, bool* truncated) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Trains a SentencePiece model (type "bpe" or "unigram") on the rendered texts of pair files and
// writes it atomically to model_out. Ids: pad 0, bos 1, eos 2, unk 3; byte fallback on, so no text is
// unknown. Deterministic for the same inputs. At most max_sentences lines (paragraphs) are sampled.
// A paragraph as the tokenizer trainer sees it: long whitespace-free runs broken with spaces, long
// paragraphs split into several lines, at UTF-8 character boundaries (see tokenizer.cpp).
std::vector<std::string> tokenizer_training_lines(const std::string& paragraph);

void train_tokenizer(const std::vector<std::string>& pair_files, const std::string& model_out, int vocab_size,
                     const std::string& type = "bpe", long max_sentences = 300000);

}  // namespace cairn
