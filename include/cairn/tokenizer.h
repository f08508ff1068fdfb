// Tokenizers. Model input = [BOS] + ids(text) + [EOS] (where the tokenizer adds them), left-truncated
// to max_seq_len (the end of the text, where the response is, is kept).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cairn {

// A tokenizer: SentencePiece (models trained by `cairn tokenizer train`, from-scratch runs) or
// byte-level BPE (the pretrained model's own, from tokenizer.json or GGUF metadata: bpe_tokenizer.h).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "sentencepiece" | "bpe"
  // Ids of text with nothing added. A byte-level BPE tokenizer recognises its special tokens written
  // in the text (e.g. "<|im_end|>"); SentencePiece treats all text as text.
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
  // Whether model input gets a BOS first / an EOS last (SentencePiece: both; a pretrained BPE
  // tokenizer: as its configuration says — a chat template already ends the text itself).
  virtual bool add_bos() const = 0;
  virtual bool add_eos() const = 0;
  // Writes the tokenizer to `path` in its own format (tokenizer.model or tokenizer.json), atomically.
  virtual void save(const std::string& path) const = 0;
  // The file name a run directory keeps it under: "tokenizer.model" or "tokenizer.json".
  std::string file_name() const { return kind() == "bpe" ? "tokenizer.json" : "tokenizer.model"; }

  // Whether a space that follows a non-space and precedes an ASCII letter always starts a token, so
  // the tokens of text[p:] from such a p are exactly the tokens of text after p (docs/model.md#long-texts).
  virtual bool starts_token_at_space_letter() const { return false; }

  // Model input: [BOS] + encode(text) + [EOS] (as add_bos/add_eos say), left-truncated to
  // max_seq_len: the end (the response, and EOS) is kept, the start (and BOS) cut. A long text is
  // tokenized only from a token boundary near its end (when starts_token_at_space_letter()), with
  // the same result, so its cost is bounded by max_seq_len, not by the text.
  std::vector<int32_t> encode_for_model(const std::string& text, int max_seq_len, bool* truncated) const;
};

// A SentencePiece model file (DataError when missing or not a SentencePiece model with BOS and EOS).
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// The tokenizer of a run directory: tokenizer.json (byte-level BPE) if present, else tokenizer.model.
std::unique_ptr<Tokenizer> load_run_tokenizer(const std::string& run_dir);

// A paragraph as the tokenizer trainer sees it: long whitespace-free runs broken with spaces, long
// paragraphs split into several lines, at UTF-8 character boundaries (see tokenizer.cpp).
std::vector<std::string> tokenizer_training_lines(const std::string& paragraph);

constexpr long kTokenizerMaxSentences = 300000;  // the default of `tokenizer train --max-sentences`

// Trains a SentencePiece model (type "bpe" or "unigram") on the rendered texts of pair files and
// writes it atomically to model_out. Ids: pad 0, bos 1, eos 2, unk 3; byte fallback on, so no text is
// unknown. Deterministic for the same inputs. At most max_sentences lines (paragraphs) are sampled.
// Returns the piece count of the model written: vocab_size, or fewer when the text has fewer distinct
// pieces and cap_vocab is set (without cap_vocab that is a UsageError naming --vocab-size).
int train_tokenizer(const std::vector<std::string>& pair_files, const std::string& model_out, int vocab_size,
                    const std::string& type = "bpe", long max_sentences = kTokenizerMaxSentences,
                    bool cap_vocab = false);

}  // namespace cairn
