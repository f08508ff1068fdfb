// load_pretrained: Hugging Face directories and GGUF files → cairn parameters, see pretrained.h.
//
// Tensor mapping (cairn name ← source), shapes in PyTorch [out, in] layout:
//   llama  tok_emb ← model.embed_tokens | token_embd;  ln1 ← input_layernorm | attn_norm;
//          attn.qkv ← rows [q_proj; k_proj; v_proj] | [attn_q; attn_k; attn_v] (GGUF q/k rows un-permuted);
//          attn.proj ← o_proj | attn_output;  ln2 ← post_attention_layernorm | ffn_norm;
//          mlp.fc ← rows [gate_proj; up_proj] | [ffn_gate; ffn_up];  mlp.proj ← down_proj | ffn_down;
//          ln_f ← model.norm | output_norm;  lm_head / output: dropped.
//   gpt2   tok_emb ← wte;  pos_emb ← wpe (first max_seq_len rows);  ln1/ln2/ln_f ← ln_1/ln_2/ln_f;
//          attn.qkv ← c_attn, attn.proj ← attn.c_proj, mlp.fc ← c_fc, mlp.proj ← mlp.c_proj, each
//          transposed (GPT-2 stores Conv1D weights [in, out]).
// llama.cpp stores attn_q / attn_k with the rows of each head permuted for interleaved RoPE
// (row r = 2i + j of a head holds Hugging Face row j·HS/2 + i); cairn uses Hugging Face's rotate-half
// layout, so those rows are put back.
#include "cairn/pretrained.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cairn/bpe_tokenizer.h"
#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/gguf.h"
#include "cairn/io.h"
#include "cairn/params.h"
#include "util/rng.h"

namespace fs = std::filesystem;

namespace cairn {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

// The source's tensors by name, read (and widened to fp32) on demand.
struct Source {
  std::string path;
  std::function<bool(const std::string&)> has;
  std::function<LoadedTensor(const std::string&)> get;  // DataError when missing
  uint64_t elements = 0;                                // all tensors' elements together
};

// Every cairn tensor except the reward head is copied from source tensors of its size, so a table
// bigger than all the source's tensors together comes from dimensions that no tensor backs (a
// hostile or broken header): refused by name before the table is allocated.
void check_source_backs(const ParamTable& t, const Source& src) {
  uint64_t need = 0;
  for (const auto& info : t.tensors())
    if (info.name.rfind("head.", 0) != 0) need += info.numel;
  if (need > src.elements)
    throw DataError(src.path, 0, "the model's dimensions need " + std::to_string(need) +
                                     " parameters but its tensors hold only " + std::to_string(src.elements) +
                                     " values (a header field is wrong)");
}

// Fills params (the table's layout) from a source, tensor by tensor.
class Filler {
 public:
  Filler(const ParamTable& t, std::vector<float>& params, const Source& src) : t_(t), p_(params), src_(src) {}

  // The source tensor `name` with exactly `shape` and finite values (after dequantization).
  LoadedTensor fetch(const std::string& name, const std::vector<int64_t>& shape) const {
    LoadedTensor x = src_.get(name);
    if (x.shape != shape)
      throw DataError(src_.path, 0, "tensor \"" + name + "\" has shape " + shape_str(x.shape) + ", expected " + shape_str(shape));
    require_finite(x.data, name, src_.path);
    return x;
  }
  // Copies `rows` of data into cairn tensor `dst` starting at row `row0`.
  void put_rows(const std::string& dst, int64_t row0, const std::vector<float>& data) {
    const ParamInfo* info = t_.find(dst);
    const int64_t cols = info->shape.size() > 1 ? info->shape[1] : 1;
    std::copy(data.begin(), data.end(), p_.begin() + info->offset + row0 * cols);
    filled_[dst] += data.size();
  }
  void put(const std::string& dst, const std::string& name) {
    const ParamInfo* info = t_.find(dst);
    put_rows(dst, 0, fetch(name, info->shape).data);
  }
  // Every cairn tensor except the reward head must have been filled completely.
  void check_complete() const {
    for (const auto& info : t_.tensors()) {
      if (info.name.rfind("head.", 0) == 0) continue;
      auto it = filled_.find(info.name);
      if (it == filled_.end() || it->second != info.numel)
        throw DataError(src_.path, 0, "internal: cairn tensor " + info.name + " was not filled from the model");
    }
  }

 private:
  const ParamTable& t_;
  std::vector<float>& p_;
  const Source& src_;
  std::map<std::string, size_t> filled_;
};

std::vector<float> transpose(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[c * rows + r] = x[r * cols + c];
  return y;
}

// Undoes llama.cpp's per-head row permutation of attn_q / attn_k: GGUF row h·HS + 2i + j holds
// Hugging Face row h·HS + j·HS/2 + i.
std::vector<float> unpermute_rope_rows(const std::vector<float>& x, int heads, int HS, int64_t cols) {
  std::vector<float> y(x.size());
  const int half = HS / 2;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < half; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t from = static_cast<int64_t>(h) * HS + 2 * i + j, to = static_cast<int64_t>(h) * HS + j * half + i;
        std::copy_n(x.begin() + from * cols, cols, y.begin() + to * cols);
      }
  return y;
}

// Source tensor names of a llama checkpoint: Hugging Face's or llama.cpp's (whose q/k rows are
// permuted per head, see the file comment).
struct LlamaNames {
  std::string embed, final_norm, block_prefix;  // block i's names: block_prefix + i + "." + the suffixes
  std::string ln1, q, k, v, o, ln2, gate, up, down;
  bool permuted_qk;
};

void fill_llama(Filler& f, const ModelConfig& c, const LlamaNames& n) {
  const int64_t C = c.d_model, F = c.d_ff, HS = c.head_size(), NH = c.n_heads, NKV = c.kv_heads();
  auto qk_rows = [&](const std::string& name, int64_t heads) {
    std::vector<float> w = f.fetch(name, {heads * HS, C}).data;
    return n.permuted_qk ? unpermute_rope_rows(w, static_cast<int>(heads), static_cast<int>(HS), C) : w;
  };
  f.put("tok_emb.weight", n.embed);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string s = n.block_prefix + std::to_string(i) + ".", d = "blocks." + std::to_string(i) + ".";
    f.put(d + "ln1.weight", s + n.ln1);
    f.put_rows(d + "attn.qkv.weight", 0, qk_rows(s + n.q, NH));
    f.put_rows(d + "attn.qkv.weight", NH * HS, qk_rows(s + n.k, NKV));
    f.put_rows(d + "attn.qkv.weight", (NH + NKV) * HS, f.fetch(s + n.v, {NKV * HS, C}).data);
    f.put(d + "attn.proj.weight", s + n.o);
    f.put(d + "ln2.weight", s + n.ln2);
    f.put_rows(d + "mlp.fc.weight", 0, f.fetch(s + n.gate, {F, C}).data);
    f.put_rows(d + "mlp.fc.weight", F, f.fetch(s + n.up, {F, C}).data);
    f.put(d + "mlp.proj.weight", s + n.down);
  }
  f.put("ln_f.weight", n.final_norm);
}

void init_heads(const ParamTable& t, std::vector<float>& p, uint64_t seed) {
  Rng rng(seed);
  for (const auto& info : t.tensors())
    if (info.name.rfind("head.", 0) == 0)
      for (size_t i = 0; i < info.numel; ++i)
        p[info.offset + i] = info.init == InitKind::Zeros ? 0.0f : static_cast<float>(0.02 * rng.normal());
}

void apply_heads(ModelConfig& c, const ModelConfig& heads, int max_seq_len, int model_len, const std::string& path) {
  c.n_heads_out = heads.n_heads_out, c.head_names = heads.head_names, c.head_weights = heads.head_weights;
  if (max_seq_len > 0) {
    if (c.arch == "gpt2" && max_seq_len > model_len)
      throw DataError(path, 0, "--max-seq-len " + std::to_string(max_seq_len) + " exceeds the model's " +
                                   std::to_string(model_len) + " learned positions");
    c.max_seq_len = max_seq_len;
  } else {
    c.max_seq_len = model_len;
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw DataError(path, 0, e.what());
  }
}

// ---- Hugging Face directories ----

nlohmann::json read_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception&) {
    throw DataError(path, 0, "not valid JSON");
  }
}

// model.safetensors, or the shards listed by model.safetensors.index.json (weight_map name → file).
Source hf_weights(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> files;
  if (fs::exists(single)) {
    files.push_back(single.string());
  } else if (fs::exists(index)) {
    const nlohmann::json j = read_json(index.string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw DataError(index.string(), 0, "missing \"weight_map\" object");
    std::set<std::string> shard_names;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw DataError(index.string(), 0, "weight_map values must be file names");
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw DataError(index.string(), 0, "shard name \"" + f + "\" is not a plain file name");
      shard_names.insert(f);
    }
    for (const auto& f : shard_names) files.push_back((fs::path(dir) / f).string());
  } else {
    throw DataError(dir, 0, "no model.safetensors or model.safetensors.index.json");
  }
  // Opened, not read: each tensor is read from its shard when the filler asks for it.
  auto shards = std::make_shared<std::vector<SafetensorsFile>>();
  auto where = std::make_shared<std::map<std::string, size_t>>();  // tensor → shard
  Source s;
  s.path = dir;
  for (const auto& f : files) {
    shards->emplace_back(f);
    for (const auto& [name, e] : shards->back().tensors()) {
      if (!where->emplace(name, shards->size() - 1).second) throw DataError(f, 0, "tensor \"" + name + "\" appears in two shards");
      s.elements += e.numel;
    }
  }
  s.has = [where](const std::string& n) { return where->count(n) > 0; };
  s.get = [shards, where, dir](const std::string& n) {
    auto it = where->find(n);
    if (it == where->end()) throw DataError(dir, 0, "missing tensor \"" + n + "\"");
    return (*shards)[it->second].load(n);
  };
  return s;
}

template <class T>
T hf_field(const nlohmann::json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) throw DataError(path, 0, std::string("missing field \"") + key + "\"");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw DataError(path, 0, std::string("field \"") + key + "\" has the wrong type");
  }
}

PretrainedModel load_hf(const std::string& dir, const ModelConfig& heads, int max_seq_len, uint64_t seed) {
  const std::string cpath = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cpath)) throw DataError(dir, 0, "not a Hugging Face model directory (no config.json)");
  const nlohmann::json j = read_json(cpath);
  if (!j.is_object()) throw DataError(cpath, 0, "not a JSON object");
  const std::string type = j.value("model_type", std::string());
  PretrainedModel m;
  m.source = "hf";
  ModelConfig& c = m.cfg;
  int model_len = 0;
  if (type == "llama") {
    c.arch = "llama";
    c.d_model = hf_field<int>(j, "hidden_size", cpath);
    c.n_layers = hf_field<int>(j, "num_hidden_layers", cpath);
    c.n_heads = hf_field<int>(j, "num_attention_heads", cpath);
    c.n_kv_heads = j.value("num_key_value_heads", c.n_heads);
    c.d_ff = hf_field<int>(j, "intermediate_size", cpath);
    c.vocab_size = hf_field<int>(j, "vocab_size", cpath);
    c.rope_theta = j.value("rope_theta", 10000.0f);
    c.norm_eps = j.value("rms_norm_eps", 1e-6f);
    c.tie_embeddings = j.value("tie_word_embeddings", false);
    model_len = hf_field<int>(j, "max_position_embeddings", cpath);
    if (j.value("hidden_act", std::string("silu")) != "silu")
      throw DataError(cpath, 0, "hidden_act \"" + j["hidden_act"].get<std::string>() + "\" is not supported (silu only)");
    if (j.value("attention_bias", false) || j.value("mlp_bias", false))
      throw DataError(cpath, 0, "attention_bias / mlp_bias are not supported (the llama family has no biases)");
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      throw DataError(cpath, 0, "rope_scaling is not supported");
    if (j.contains("head_dim") && !j["head_dim"].is_null() && c.n_heads > 0 && j["head_dim"] != c.d_model / c.n_heads)
      throw DataError(cpath, 0, "head_dim other than hidden_size / num_attention_heads is not supported");
  } else if (type == "gpt2") {
    c.arch = "gpt2";
    c.d_model = hf_field<int>(j, "n_embd", cpath);
    c.n_layers = hf_field<int>(j, "n_layer", cpath);
    c.n_heads = hf_field<int>(j, "n_head", cpath);
    c.d_ff = j.contains("n_inner") && !j["n_inner"].is_null() ? j["n_inner"].get<int>() : 4 * c.d_model;
    c.vocab_size = hf_field<int>(j, "vocab_size", cpath);
    model_len = hf_field<int>(j, "n_positions", cpath);
    const std::string act = j.value("activation_function", std::string("gelu_new"));
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
      throw DataError(cpath, 0, "activation_function \"" + act + "\" is not supported (gelu_new: tanh GELU)");
    if (std::fabs(j.value("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12)
      throw DataError(cpath, 0, "layer_norm_epsilon other than 1e-5 is not supported");
    if (j.value("scale_attn_by_inverse_layer_idx", false) || j.value("reorder_and_upcast_attn", false) ||
        !j.value("scale_attn_weights", true))
      throw DataError(cpath, 0, "GPT-2 attention options other than the defaults are not supported");
  } else {
    throw DataError(cpath, 0, "model_type \"" + type + "\" is not supported (llama or gpt2)");
  }
  // Tokenizer (ids, specials) and chat template.
  const std::string tpath = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(tpath)) throw DataError(dir, 0, "no tokenizer.json");
  m.tokenizer = load_bpe_tokenizer(tpath);
  const fs::path tcfg = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(tcfg)) {
    const nlohmann::json tj = read_json(tcfg.string());
    if (tj.contains("chat_template") && tj["chat_template"].is_string()) m.chat_template = tj["chat_template"];
  }
  if (m.tokenizer->vocab_size() > c.vocab_size)
    throw DataError(tpath, 0, "the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                                  " tokens but the model's vocabulary is " + std::to_string(c.vocab_size));
  c.bos_id = m.tokenizer->bos_id(), c.eos_id = m.tokenizer->eos_id(), c.pad_id = m.tokenizer->pad_id();
  apply_heads(c, heads, max_seq_len, model_len, cpath);

  const Source src = hf_weights(dir);
  ParamTable t(c);
  check_source_backs(t, src);
  m.params.assign(t.total(), 0.0f);
  Filler f(t, m.params, src);
  if (c.is_llama()) {
    // Some checkpoints (and save_pretrained of *ForCausalLM) prefix the backbone with "model.".
    const std::string pre = src.has("model.embed_tokens.weight") ? "model." : "";
    fill_llama(f, c,
               {pre + "embed_tokens.weight", pre + "norm.weight", pre + "layers.", "input_layernorm.weight",
                "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                false});
  } else {
    const int64_t C = c.d_model, F = c.d_ff;
    const std::string pre = src.has("transformer.wte.weight") ? "transformer." : "";
    f.put("tok_emb.weight", pre + "wte.weight");
    const LoadedTensor wpe = f.fetch(pre + "wpe.weight", {model_len, C});
    f.put_rows("pos_emb.weight", 0, std::vector<float>(wpe.data.begin(), wpe.data.begin() + c.max_seq_len * C));
    auto conv1d = [&](const std::string& dst, const std::string& name, int64_t in, int64_t out) {
      f.put_rows(dst, 0, transpose(f.fetch(name, {in, out}).data, in, out));
    };
    for (int64_t i = 0; i < c.n_layers; ++i) {
      const std::string s = pre + "h." + std::to_string(i) + ".", d = "blocks." + std::to_string(i) + ".";
      f.put(d + "ln1.weight", s + "ln_1.weight"), f.put(d + "ln1.bias", s + "ln_1.bias");
      conv1d(d + "attn.qkv.weight", s + "attn.c_attn.weight", C, 3 * C), f.put(d + "attn.qkv.bias", s + "attn.c_attn.bias");
      conv1d(d + "attn.proj.weight", s + "attn.c_proj.weight", C, C), f.put(d + "attn.proj.bias", s + "attn.c_proj.bias");
      f.put(d + "ln2.weight", s + "ln_2.weight"), f.put(d + "ln2.bias", s + "ln_2.bias");
      conv1d(d + "mlp.fc.weight", s + "mlp.c_fc.weight", C, F), f.put(d + "mlp.fc.bias", s + "mlp.c_fc.bias");
      conv1d(d + "mlp.proj.weight", s + "mlp.c_proj.weight", F, C), f.put(d + "mlp.proj.bias", s + "mlp.c_proj.bias");
    }
    f.put("ln_f.weight", pre + "ln_f.weight"), f.put("ln_f.bias", pre + "ln_f.bias");
  }
  f.check_complete();
  init_heads(t, m.params, seed);
  m.description = c.arch + " from " + dir + " (" + std::to_string(c.n_layers) + " layers, d " + std::to_string(c.d_model) +
                  ", " + std::to_string(c.n_heads) + "/" + std::to_string(c.kv_heads()) + " heads)";
  return m;
}

// ---- GGUF files (llama.cpp) ----

PretrainedModel load_gguf(const std::string& path, const ModelConfig& heads, int max_seq_len, uint64_t seed) {
  auto g = std::make_shared<GgufFile>(path);
  const std::string arch = g->get_string("general.architecture");
  if (arch != "llama")
    throw DataError(path, 0, "general.architecture \"" + arch + "\" is not supported (llama; GPT-2 from a Hugging Face directory)");
  PretrainedModel m;
  m.source = "gguf";
  ModelConfig& c = m.cfg;
  c.arch = "llama";
  c.d_model = static_cast<int>(g->get_int("llama.embedding_length"));
  c.n_layers = static_cast<int>(g->get_int("llama.block_count"));
  c.n_heads = static_cast<int>(g->get_int("llama.attention.head_count"));
  c.n_kv_heads = g->has("llama.attention.head_count_kv") ? static_cast<int>(g->get_int("llama.attention.head_count_kv")) : c.n_heads;
  c.d_ff = static_cast<int>(g->get_int("llama.feed_forward_length"));
  c.rope_theta = g->has("llama.rope.freq_base") ? static_cast<float>(g->get_float("llama.rope.freq_base")) : 10000.0f;
  c.norm_eps = static_cast<float>(g->get_float("llama.attention.layer_norm_rms_epsilon"));
  const int model_len = static_cast<int>(g->get_int("llama.context_length"));
  if (c.n_heads < 1 || c.d_model % c.n_heads) throw DataError(path, 0, "head_count does not divide embedding_length");
  if (g->has("llama.rope.dimension_count") && g->get_int("llama.rope.dimension_count") != c.d_model / c.n_heads)
    throw DataError(path, 0, "partial rotary embeddings (rope.dimension_count < head size) are not supported");
  if (g->has("llama.rope.scaling.type") && g->get_string("llama.rope.scaling.type") != "none")
    throw DataError(path, 0, "rope scaling is not supported");
  if (g->has("llama.expert_count") && g->get_int("llama.expert_count") > 0)
    throw DataError(path, 0, "mixture-of-experts models are not supported");
  // the tokenizer
  const std::string tok_model = g->get_string("tokenizer.ggml.model");
  if (tok_model != "gpt2")
    throw DataError(path, 0, "tokenizer.ggml.model \"" + tok_model + "\" is not supported (gpt2: byte-level BPE)");
  BpeSpec spec;
  spec.tokens = g->get_string_array("tokenizer.ggml.tokens");
  spec.merges = g->get_string_array("tokenizer.ggml.merges");
  if (g->has("tokenizer.ggml.token_type"))
    for (int64_t t : g->get_int_array("tokenizer.ggml.token_type")) spec.token_types.push_back(static_cast<int32_t>(t));
  auto id = [&](const char* key) { return g->has(key) ? static_cast<int>(g->get_int(key)) : -1; };
  spec.bos_id = id("tokenizer.ggml.bos_token_id"), spec.eos_id = id("tokenizer.ggml.eos_token_id");
  spec.pad_id = id("tokenizer.ggml.padding_token_id"), spec.unk_id = id("tokenizer.ggml.unknown_token_id");
  spec.add_bos = g->has("tokenizer.ggml.add_bos_token") && g->get_bool("tokenizer.ggml.add_bos_token");
  spec.add_eos = g->has("tokenizer.ggml.add_eos_token") && g->get_bool("tokenizer.ggml.add_eos_token");
  spec.pre = g->has("tokenizer.ggml.pre") ? g->get_string("tokenizer.ggml.pre") : "default";
  m.tokenizer = make_bpe_tokenizer(spec, path);
  if (g->has("tokenizer.chat_template")) m.chat_template = g->get_string("tokenizer.chat_template");
  c.vocab_size = static_cast<int>(g->has("llama.vocab_size") ? g->get_int("llama.vocab_size") : spec.tokens.size());
  if (m.tokenizer->vocab_size() > c.vocab_size) throw DataError(path, 0, "more tokens than the model's vocabulary");
  c.bos_id = m.tokenizer->bos_id(), c.eos_id = m.tokenizer->eos_id(), c.pad_id = m.tokenizer->pad_id();
  c.tie_embeddings = !g->has_tensor("output.weight");
  apply_heads(c, heads, max_seq_len, model_len, path);

  Source src;
  src.path = path;
  for (const auto& t : g->tensors()) src.elements += static_cast<uint64_t>(t.n_elements);
  src.has = [g](const std::string& n) { return g->has_tensor(n); };
  src.get = [g](const std::string& n) {
    const GgufTensorInfo& t = g->tensor(n);
    return LoadedTensor{t.shape(), g->dequantize(t)};
  };
  ParamTable t(c);
  check_source_backs(t, src);
  m.params.assign(t.total(), 0.0f);
  Filler f(t, m.params, src);
  fill_llama(f, c,
             {"token_embd.weight", "output_norm.weight", "blk.", "attn_norm.weight", "attn_q.weight", "attn_k.weight",
              "attn_v.weight", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
              "ffn_down.weight", true});
  f.check_complete();
  init_heads(t, m.params, seed);
  m.description = "llama from " + path + " (" + std::to_string(c.n_layers) + " layers, d " + std::to_string(c.d_model) +
                  ", " + std::to_string(c.n_heads) + "/" + std::to_string(c.kv_heads()) + " heads, vocab " +
                  std::to_string(c.vocab_size) + ")";
  return m;
}

}  // namespace

PretrainedModel load_pretrained(const std::string& path, const ModelConfig& heads, int max_seq_len, uint64_t seed) {
  if (fs::is_directory(path)) return load_hf(path, heads, max_seq_len, seed);
  if (!fs::exists(path)) throw DataError(path, 0, "no such file or directory");
  return load_gguf(path, heads, max_seq_len, seed);
}

}  // namespace cairn
