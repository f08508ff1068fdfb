// Starting a reward model from a pretrained language model (`cairn train --init PATH`): a GGUF file or
// a Hugging Face model directory (config.json + model.safetensors or its sharded index +
// tokenizer.json), of the llama or the GPT-2 family. The backbone's weights become cairn's parameters
// (fp32), the language-model head is dropped, the reward head(s) start fresh; the model's own
// byte-level BPE tokenizer and chat template come along. See docs/pretrained.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cairn/config.h"
#include "cairn/tokenizer.h"

namespace cairn {

struct PretrainedModel {
  ModelConfig cfg;                       // the backbone's dimensions + the reward heads asked for
  std::vector<float> params;             // ParamTable(cfg) layout, reward head(s) initialised
  std::unique_ptr<Tokenizer> tokenizer;  // the model's own (byte-level BPE)
  std::string chat_template;             // the model's chat template source (Jinja), "" if none
  std::string source;                    // "gguf" | "hf"
  std::string description;               // for the log: architecture, size, source
};

// heads: n_heads_out, head_names and head_weights to build (the rest of `heads` is ignored);
// max_seq_len > 0 caps the context (the model's own length otherwise, and never above it for gpt2's
// learned positions). The reward head(s) are drawn N(0, 0.02) from `seed`. Anything this cannot read
// exactly (an unknown architecture, tensor type or option; a missing or mis-shaped tensor) is a
// DataError naming it.
PretrainedModel load_pretrained(const std::string& path, const ModelConfig& heads, int max_seq_len, uint64_t seed);

}  // namespace cairn
