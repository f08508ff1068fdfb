// Model hyper-parameters and presets (docs/model.md#presets, docs/model.md#architecture). Plain data; no Eigen or CUDA types.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

struct ModelConfig {
  // "gpt2": pre-LN LayerNorm blocks, learned positions, GELU MLP, biases (docs/model.md#architecture).
  // "llama": RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention, no biases
  //          (docs/model.md#llama-family).
  std::string arch = "gpt2";
  int vocab_size = 8192;   // V
  int max_seq_len = 256;   // T (positions)
  int d_model = 128;       // C
  int n_layers = 2;        // L
  int n_heads = 4;         // NH; head size HS = C / NH
  int d_ff = 512;          // F (llama: the SwiGLU hidden size)
  int n_kv_heads = 0;      // NKV key/value heads (grouped-query attention); 0: = n_heads
  float rope_theta = 10000.0f;  // llama: rotary base θ
  float norm_eps = 1e-5f;       // llama: RMSNorm eps (gpt2's LayerNorm eps is fixed at 1e-5)
  bool tie_embeddings = false;  // llama: the source LM tied its output head to tok_emb (kept for export)
  int n_heads_out = 1;     // reward heads
  std::vector<std::string> head_names = {"reward"};
  std::vector<float> head_weights = {1.0f};  // composite reward = Σ head_weights[h] · r_h
  int pad_id = 0;
  int bos_id = 1;
  int eos_id = 2;
  // How pairs and scoring records become text (include/cairn/chat_template.h): "plain" | "chatml" |
  // "llama3", and the template's default system message.
  std::string chat_template = "plain";
  std::string chat_system;

  int head_size() const { return d_model / n_heads; }
  int kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  bool is_llama() const { return arch == "llama"; }
  int qkv_width() const { return (n_heads + 2 * kv_heads()) * head_size(); }  // columns of the qkv projection
  // Index of the length-debiasing head (named "length", scoring weight 0), or −1 (docs/model.md#length-debiasing).
  int length_head() const;
  // Throws std::invalid_argument naming the offending field.
  void validate() const;
};

// "tiny" | "small" | "base"; throws std::invalid_argument on an unknown name.
ModelConfig preset_config(const std::string& name);

}  // namespace cairn
