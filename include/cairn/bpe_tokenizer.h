// Byte-level BPE tokenizers (GPT-2, Llama-3, SmolLM, Qwen2 style): the tokenizer of a pretrained model,
// read from a Hugging Face tokenizer.json or from GGUF metadata, and written back as tokenizer.json.
// Encoding reproduces Hugging Face tokenizers 0.19 id for id (docs/tokenizers.md): added tokens are split
// out of the text first, then the pre-tokenizer regexes (PCRE2, UTF + UCP), GPT-2's byte-to-unicode
// mapping and the BPE merges by rank. Invalid UTF-8 in a text is replaced by U+FFFD first, each maximal
// ill-formed subsequence by one U+FFFD (what Python's bytes.decode("utf-8", "replace") does).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cairn/tokenizer.h"

namespace cairn {

// A tokenizer.json (Hugging Face tokenizers format, model type BPE with a byte-level pre-tokenizer).
// BOS/EOS/pad: from the post_processor, else from a tokenizer_config.json beside the file, else by
// common names (docs/tokenizers.md#bos-eos-and-pad). DataError naming the file on anything it does not
// support or that is malformed. save() writes tokenizer.json and, beside it, a tokenizer_config.json
// naming BOS/EOS/pad (an existing one keeps its other keys).
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json_path);

// A byte-level BPE vocabulary as GGUF metadata holds it (tokenizer.ggml.model = "gpt2").
struct BpeSpec {
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens: id → token (byte-mapped text)
  std::vector<std::string> merges;   // tokenizer.ggml.merges: "left right", by rank
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (empty: all normal). 3 control and
                                     // 4 user-defined tokens are matched literally in text
  // -1: absent (BOS/EOS then by common names, pad = EOS). unk_id is recorded only: bytes missing
  // from the vocabulary are dropped, as llama.cpp and Hugging Face (unk_token null) do.
  int bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  bool add_bos = false, add_eos = false;  // tokenizer.ggml.add_bos_token / add_eos_token
  // tokenizer.ggml.pre: "gpt2", "llama-bpe" | "llama3" | "llama-v3", "smollm" | "starcoder", "qwen2",
  // "default" (or ""); anything else is a DataError.
  std::string pre;
};

// The tokenizer of a BpeSpec; source_for_errors names the file in DataErrors. save() writes the
// equivalent tokenizer.json (and tokenizer_config.json).
std::unique_ptr<Tokenizer> make_bpe_tokenizer(const BpeSpec& spec, const std::string& source_for_errors);

}  // namespace cairn
