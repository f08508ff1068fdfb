// Presets and validation of ModelConfig (docs/model.md#presets).
#include <cmath>
#include <stdexcept>
#include <string>

#include "cairn/config.h"

namespace cairn {

void ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("invalid model config: " + what);
  };
  need(arch == "gpt2" || arch == "llama", "arch must be gpt2 or llama (got '" + arch + "')");
  need(vocab_size >= 4 && vocab_size <= (1 << 24), "vocab_size must be in [4, 2^24]");
  need(max_seq_len >= 2 && max_seq_len <= (1 << 20), "max_seq_len must be in [2, 2^20]");
  need(d_model >= 1 && d_model <= (1 << 16), "d_model must be in [1, 65536]");
  need(n_layers >= 0 && n_layers <= 1024, "n_layers must be in [0, 1024]");
  need(n_heads >= 1 && d_model % n_heads == 0, "n_heads must divide d_model");
  need(d_ff >= 1 && d_ff <= (1 << 20), "d_ff must be in [1, 2^20]");
  need(n_kv_heads >= 0 && n_kv_heads <= n_heads && n_heads % kv_heads() == 0,
       "n_kv_heads must divide n_heads");
  need(arch == "llama" || kv_heads() == n_heads, "grouped-query attention (n_kv_heads) needs arch llama");
  need(arch != "llama" || head_size() % 2 == 0, "llama: the head size must be even (rotary pairs)");
  need(std::isfinite(rope_theta) && rope_theta > 1.0f, "rope_theta must be > 1");
  need(chat_template == "plain" || chat_template == "chatml" || chat_template == "llama3",
       "chat_template must be plain, chatml or llama3");
  need(std::isfinite(norm_eps) && norm_eps > 0 && norm_eps < 1, "norm_eps must be in (0, 1)");
  need(n_heads_out >= 1 && n_heads_out <= 1024, "n_heads_out must be in [1, 1024]");
  need(static_cast<int>(head_names.size()) == n_heads_out, "head_names must have n_heads_out entries");
  need(static_cast<int>(head_weights.size()) == n_heads_out, "head_weights must have n_heads_out entries");
  for (int id : {pad_id, bos_id, eos_id}) need(id >= 0 && id < vocab_size, "pad/bos/eos ids must be < vocab_size");
}

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {
    c.d_model = 128, c.n_layers = 2, c.n_heads = 4, c.d_ff = 512, c.max_seq_len = 256;
  } else if (name == "small") {
    c.d_model = 256, c.n_layers = 4, c.n_heads = 4, c.d_ff = 1024, c.max_seq_len = 512;
  } else if (name == "base") {
    c.d_model = 512, c.n_layers = 8, c.n_heads = 8, c.d_ff = 2048, c.max_seq_len = 512;
  } else {
    throw std::invalid_argument("unknown preset '" + name + "' (expected tiny, small or base)");
  }
  return c;
}

}  // namespace cairn
