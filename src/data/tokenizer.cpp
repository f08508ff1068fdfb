// SentencePiece wrapper and trainer, see include/cairn/tokenizer.h.
#include "cairn/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include <unistd.h>

#include "cairn/bpe_tokenizer.h"
#include "cairn/data.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "util/rng.h"

namespace fs = std::filesystem;

namespace cairn {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A position p where text[p] == ' ', text[p-1] is not whitespace and text[p+1] is an ASCII letter
// starts a token in every tokenizer cairn reads (docs/model.md#long-texts): the GPT-2, Llama-3 and
// SmolLM pre-tokenizers all end a piece there (no rule matches across a space that follows a
// non-space; " x" starts the next piece), special tokens contain no space, and SentencePiece splits
// at whitespace and gives both " x…" and a text starting "x…" the same "▁x" piece. So the tokens of
// text[p:] are exactly the tokens of text that follow p. The last such p ≤ hi; npos: none.
size_t token_boundary_before(const std::string& text, size_t hi) {
  if (text.size() < 3) return std::string::npos;
  for (size_t p = std::min(hi, text.size() - 2); p > 0; --p)
    if (text[p] == ' ' && !is_space(text[p - 1]) && is_ascii_letter(text[p + 1])) return p;
  return std::string::npos;
}

}  // namespace

std::vector<int32_t> Tokenizer::encode_for_model(const std::string& text, int max_seq_len, bool* truncated) const {
  // Long texts: only the last max_seq_len tokens are kept, so only a suffix is tokenized — from a
  // token boundary (exact, see token_boundary_before), long enough to yield max_seq_len tokens.
  // Memory and time are then bounded by the suffix, not the record.
  std::vector<int32_t> ids;
  bool cut_before = false;  // ids are the tokens after a cut, and the cut dropped at least one token
  const bool can_cut = starts_token_at_space_letter();
  for (size_t want = 16 * static_cast<size_t>(std::max(1, max_seq_len)) + 1024;; want *= 4) {
    const size_t p = can_cut && text.size() > want ? token_boundary_before(text, text.size() - want) : std::string::npos;
    if (p == std::string::npos) {  // short text, or no boundary before the window: the whole text
      ids = encode(text);
      break;
    }
    ids = encode(text.substr(p));
    if (static_cast<long>(ids.size()) + add_eos() >= max_seq_len) {
      cut_before = true;
      break;
    }
  }
  std::vector<int32_t> seq;
  seq.reserve(ids.size() + 2);
  if (add_bos() && !cut_before) seq.push_back(bos_id());
  seq.insert(seq.end(), ids.begin(), ids.end());
  if (add_eos()) seq.push_back(eos_id());
  if (seq.empty()) seq.push_back(eos_id());  // an empty text still has a last token to read
  const bool cut = cut_before || static_cast<int>(seq.size()) > max_seq_len;
  if (static_cast<int>(seq.size()) > max_seq_len) seq.erase(seq.begin(), seq.end() - max_seq_len);  // keep the end
  if (truncated) *truncated = cut;
  return seq;
}

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    if (!fs::exists(path)) throw DataError(path, 0, "tokenizer model not found");
    const auto st = sp_.Load(path);
    if (!st.ok()) throw DataError(path, 0, "not a SentencePiece model (" + st.ToString() + ")");
    if (sp_.bos_id() < 0 || sp_.eos_id() < 0)
      throw DataError(path, 0, "the tokenizer defines no BOS/EOS pieces (train it with cairn tokenizer train)");
    space_cut_ = true;
    const char* probes[][2] = {{"The", " quick brown fox"}, {"x7q!", " zebra"}, {"hello,", " World again"}};
    for (const auto& pr : probes) {
      std::vector<int32_t> a = encode(pr[0]), b = encode(pr[1]), ab = encode(std::string(pr[0]) + pr[1]);
      a.insert(a.end(), b.begin(), b.end());
      space_cut_ = space_cut_ && a == ab;
    }
  }
  std::string kind() const override { return "sentencepiece"; }
  // True for models that split at whitespace with a dummy "▁" prefix (cairn's own, SentencePiece's
  // defaults); checked on the model itself, since the options are not exposed: a space-joined text
  // must encode as its words do.
  bool starts_token_at_space_letter() const override { return space_cut_; }
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto st = sp_.Encode(text, &ids);
    if (!st.ok()) throw std::runtime_error("tokenizer: " + st.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    const auto st = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &out);
    if (!st.ok()) throw std::runtime_error("tokenizer: " + st.ToString());
    return out;
  }
  int vocab_size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  int pad_id() const override { return std::max(0, sp_.pad_id()); }
  bool add_bos() const override { return true; }
  bool add_eos() const override { return true; }
  void save(const std::string& path) const override { write_file_atomic(path, sp_.serialized_model_proto()); }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  bool space_cut_ = false;  // starts_token_at_space_letter(), probed at load
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

std::unique_ptr<Tokenizer> load_run_tokenizer(const std::string& run_dir) {
  const fs::path json = fs::path(run_dir) / "tokenizer.json";
  if (fs::exists(json)) return load_bpe_tokenizer(json.string());
  return load_sentencepiece((fs::path(run_dir) / "tokenizer.model").string());
}

// SentencePiece 0.1.97's BPE trainer crashes on long whitespace-free runs (seen on real data: a
// 65,000-character "+----" table rule, 9,000 "!"). The training corpus therefore breaks runs longer
// than kMaxRun bytes with spaces and lines longer than kMaxLine bytes into several lines, always at
// UTF-8 character boundaries. This only shapes which pieces are learned; encoding is unaffected.
static constexpr size_t kMaxRun = 64, kMaxLine = 4096;

std::vector<std::string> tokenizer_training_lines(const std::string& paragraph) {
  std::vector<std::string> out(1);
  size_t run = 0;
  for (size_t i = 0; i < paragraph.size();) {
    const unsigned char c = paragraph[i];
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    const bool space = c == ' ' || c == '\t';
    if (!space && run >= kMaxRun) out.back() += ' ', run = 0;
    if (out.back().size() + len > kMaxLine) out.emplace_back(), run = 0;
    out.back().append(paragraph, i, len);
    run = space ? 0 : run + len;
    i += len;
  }
  return out;
}

int train_tokenizer(const std::vector<std::string>& files, const std::string& model_out, int vocab_size,
                    const std::string& type, long max_sentences, bool cap_vocab) {
  if (type != "bpe" && type != "unigram") throw UsageError("tokenizer type must be bpe or unigram");
  if (vocab_size < 260) throw UsageError("--vocab-size must be ≥ 260 (256 byte pieces + specials)");
  // Scratch space for the sampled corpus and SentencePiece's output; a killed run's is removed here.
  remove_stale_temp_dirs(fs::temp_directory_path().string(), "cairn-spm-");
  const fs::path tmpdir = fs::temp_directory_path() / ("cairn-spm-" + std::to_string(getpid()));
  fs::create_directories(tmpdir);
  struct Cleanup {
    fs::path p;
    ~Cleanup() { std::error_code ec; fs::remove_all(p, ec); }
  } cleanup{tmpdir};
  mark_scratch_dir(tmpdir.string());

  // One paragraph per line: the trainer treats lines as sentences. Texts are deduplicated (pairs
  // share prompts) and reservoir-sampled to at most max_sentences lines, deterministically.
  std::vector<std::string> lines;
  std::unordered_set<std::string> seen;
  Rng rng(12345);
  long offered = 0;
  for (const auto& f : files) {
    for (const Pair& p : read_pairs(f, true, nullptr)) {
      for (const std::string* t : {&p.chosen, &p.rejected}) {
        size_t b = 0;
        while (b < t->size()) {
          size_t e = t->find('\n', b);
          if (e == std::string::npos) e = t->size();
          if (e > b && seen.insert(t->substr(b, e - b)).second) {
            for (std::string& l : tokenizer_training_lines(t->substr(b, e - b))) {
              ++offered;
              if (static_cast<long>(lines.size()) < max_sentences) lines.push_back(std::move(l));
              else if (const uint64_t k = rng.below(offered); static_cast<long>(k) < max_sentences) lines[k] = std::move(l);
            }
          }
          b = e + 1;
        }
      }
    }
  }
  if (lines.empty()) throw DataError(files.empty() ? "" : files[0], 0, "no text to train a tokenizer on");
  const fs::path corpus = tmpdir / "corpus.txt";
  {
    std::ofstream out(corpus);
    for (const auto& l : lines) out << l << '\n';
    out.close();
    if (!out) throw std::runtime_error("cannot write the tokenizer corpus " + corpus.string() + ": " + std::strerror(errno));
  }
  const fs::path prefix = tmpdir / "spm";
  sentencepiece::SetRandomGeneratorSeed(1);
  const std::string args = "--input=" + corpus.string() + " --model_prefix=" + prefix.string() +
                           " --vocab_size=" + std::to_string(vocab_size) + " --model_type=" + type +
                           " --pad_id=0 --bos_id=1 --eos_id=2 --unk_id=3 --byte_fallback=true"
                           " --character_coverage=0.9995 --max_sentence_length=65536 --num_threads=2"
                           " --minloglevel=2 --shuffle_input_sentence=false --train_extremely_large_corpus=false";
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  if (!st.ok() && st.ToString().find("Vocabulary size too high") != std::string::npos)
    st = sentencepiece::SentencePieceTrainer::Train(args + " --hard_vocab_limit=false");  // all the pieces the text has
  if (!st.ok() && st.ToString().find("smaller than required_chars") != std::string::npos)
    throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                     " is too small: the text has more distinct characters than that; raise --vocab-size");
  if (!st.ok()) throw std::runtime_error("tokenizer training failed: " + st.ToString());
  const std::string model = prefix.string() + ".model";
  const int pieces = load_sentencepiece(model)->vocab_size();
  if (pieces < vocab_size && !cap_vocab)
    throw UsageError("--vocab-size " + std::to_string(vocab_size) + " is more than the text supports (at most " +
                     std::to_string(pieces) + " pieces): lower --vocab-size or add text");
  copy_file_atomic(model, model_out);
  return pieces;
}

}  // namespace cairn
