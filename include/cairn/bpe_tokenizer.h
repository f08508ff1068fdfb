// Byte-level BPE tokenizers (GPT-2, Llama-3, SmolLM style): the tokenizer of a pretrained model,
// read from a Hugging Face tokenizer.json or from GGUF metadata, and written back as tokenizer.json.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cairn/tokenizer.h"

namespace cairn {

// A tokenizer.json (Hugging Face tokenizers format, model type BPE with a byte-level pre-tokenizer).
// DataError naming the file on anything it does not support or that is malformed.
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json_path);

}  // namespace cairn
