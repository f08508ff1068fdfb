// Writing a run directory as a Hugging Face sequence-classification model (`cairn export --format hf`):
// config.json (LlamaForSequenceClassification or GPT2ForSequenceClassification, num_labels = the
// reward heads), model.safetensors with transformers' names and layouts, the tokenizer files and the
// chat template — what transformers.AutoModelForSequenceClassification loads, with the same rewards.
// See docs/pretrained.md#export for the mapping, the head bias and the pad token.
#pragma once
#include <string>
#include <vector>

#include "cairn/config.h"
#include "cairn/tokenizer.h"

namespace cairn {

// params: ParamTable(cfg) layout. The tokenizer must be a byte-level BPE one (a pretrained model's);
// a SentencePiece run is refused with a DataError. Every file is written atomically; out_dir is created.
void export_hf(const ModelConfig& cfg, const std::vector<float>& params, const Tokenizer& tok, const std::string& out_dir);

}  // namespace cairn
