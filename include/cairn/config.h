// Model hyper-parameters and presets (docs/model.md#presets, docs/model.md#architecture). Plain data; no Eigen or CUDA types.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

struct ModelConfig {
  int vocab_size = 8192;   // V
  int max_seq_len = 256;   // T (positions)
  int d_model = 128;       // C
  int n_layers = 2;        // L
  int n_heads = 4;         // NH; head size HS = C / NH
  int d_ff = 512;          // F
  int n_heads_out = 1;     // reward heads
  std::vector<std::string> head_names = {"reward"};
  std::vector<float> head_weights = {1.0f};  // composite reward = Σ head_weights[h] · r_h
  int pad_id = 0;
  int bos_id = 1;
  int eos_id = 2;

  int head_size() const { return d_model / n_heads; }
  // Index of the length-debiasing head (named "length", scoring weight 0), or −1 (docs/model.md#length-debiasing).
  int length_head() const;
  // Throws std::invalid_argument naming the offending field.
  void validate() const;
};

// "tiny" | "small" | "base"; throws std::invalid_argument on an unknown name.
ModelConfig preset_config(const std::string& name);

}  // namespace cairn
