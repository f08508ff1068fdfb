// export_hf, see include/cairn/export.h. The inverse of the Hugging Face import of
// src/io/pretrained.cpp: attn.qkv rows split into q_proj / k_proj / v_proj, mlp.fc rows into
// gate_proj / up_proj (llama); GPT-2's Conv1D weights transposed back to [in, out].
//
// The reward head becomes `score.weight` [num_labels, d]. transformers' score layer has no bias, so a
// GPT-2 head bias b is carried by ln_f.bias instead: the head sees W·(γ⊙x̂ + β) + b, and
// β' = β + Wᵀ(WWᵀ)⁻¹b gives W·(γ⊙x̂ + β') = W·(γ⊙x̂ + β) + b exactly in exact arithmetic (W needs full
// row rank; the llama family has no head bias). The pad token: transformers reads a sequence's
// reward at the token before its first pad token, so pad must be a token the rendered texts never
// contain — "<|endoftext|>" when it is one token of the vocabulary other than EOS, else EOS (a warning).
#include "cairn/export.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "cairn/params.h"
#include "cairn/version.h"

namespace fs = std::filesystem;

namespace cairn {
namespace {

struct Writer {
  std::vector<std::vector<float>> storage;  // keeps the data of every ref alive
  std::vector<TensorRef> refs;
  void add(const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
    storage.push_back(std::move(data));
    refs.push_back({name, std::move(shape), storage.back().data()});
  }
};

std::vector<float> slice(const std::vector<float>& p, size_t off, size_t n) {
  return {p.begin() + off, p.begin() + off + n};
}

std::vector<float> transpose(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[c * rows + r] = x[r * cols + c];
  return y;
}

// β + Wᵀ(WWᵀ)⁻¹b, in double (Gaussian elimination with partial pivoting on the H×H system).
std::vector<float> fold_head_bias(const float* W, const float* b, const float* beta, int H, int C) {
  std::vector<double> A(static_cast<size_t>(H) * H), x(b, b + H);
  for (int i = 0; i < H; ++i)
    for (int j = 0; j < H; ++j) {
      double s = 0;
      for (int c = 0; c < C; ++c) s += static_cast<double>(W[i * C + c]) * W[j * C + c];
      A[i * H + j] = s;
    }
  for (int k = 0; k < H; ++k) {
    int piv = k;
    for (int i = k + 1; i < H; ++i)
      if (std::fabs(A[i * H + k]) > std::fabs(A[piv * H + k])) piv = i;
    if (std::fabs(A[piv * H + k]) < 1e-12)
      throw DataError("head.weight", 0, "the reward heads are linearly dependent: the head bias cannot be carried by ln_f.bias");
    for (int j = 0; j < H; ++j) std::swap(A[k * H + j], A[piv * H + j]);
    std::swap(x[k], x[piv]);
    for (int i = k + 1; i < H; ++i) {
      const double f = A[i * H + k] / A[k * H + k];
      for (int j = k; j < H; ++j) A[i * H + j] -= f * A[k * H + j];
      x[i] -= f * x[k];
    }
  }
  for (int k = H - 1; k >= 0; --k) {
    for (int j = k + 1; j < H; ++j) x[k] -= A[k * H + j] * x[j];
    x[k] /= A[k * H + k];
  }
  std::vector<float> out(C);
  for (int c = 0; c < C; ++c) {
    double s = beta[c];
    for (int h = 0; h < H; ++h) s += static_cast<double>(W[h * C + c]) * x[h];
    out[c] = static_cast<float>(s);
  }
  return out;
}

}  // namespace

void export_hf(const ModelConfig& c, const std::vector<float>& P, const Tokenizer& tok, const std::string& out) {
  if (tok.kind() != "bpe")
    throw DataError(out, 0, "export needs a byte-level BPE tokenizer (a run started with --init); this run's is " + tok.kind());
  const ParamTable t(c);
  if (P.size() != t.total()) throw std::invalid_argument("export_hf: parameter count does not match the config");
  fs::create_directories(out);
  const int64_t C = c.d_model, F = c.d_ff, HS = c.head_size(), NH = c.n_heads, NKV = c.kv_heads(), H = c.n_heads_out;
  Writer w;
  nlohmann::ordered_json cfg;
  if (c.is_llama()) {
    w.add("model.embed_tokens.weight", {c.vocab_size, C}, slice(P, t.tok_emb, static_cast<size_t>(c.vocab_size) * C));
    for (int i = 0; i < c.n_layers; ++i) {
      const BlockParams& b = t.blocks[i];
      const std::string s = "model.layers." + std::to_string(i) + ".";
      w.add(s + "input_layernorm.weight", {C}, slice(P, b.ln1_w, C));
      w.add(s + "self_attn.q_proj.weight", {NH * HS, C}, slice(P, b.qkv_w, NH * HS * C));
      w.add(s + "self_attn.k_proj.weight", {NKV * HS, C}, slice(P, b.qkv_w + NH * HS * C, NKV * HS * C));
      w.add(s + "self_attn.v_proj.weight", {NKV * HS, C}, slice(P, b.qkv_w + (NH + NKV) * HS * C, NKV * HS * C));
      w.add(s + "self_attn.o_proj.weight", {C, NH * HS}, slice(P, b.proj_w, C * NH * HS));
      w.add(s + "post_attention_layernorm.weight", {C}, slice(P, b.ln2_w, C));
      w.add(s + "mlp.gate_proj.weight", {F, C}, slice(P, b.fc_w, F * C));
      w.add(s + "mlp.up_proj.weight", {F, C}, slice(P, b.fc_w + F * C, F * C));
      w.add(s + "mlp.down_proj.weight", {C, F}, slice(P, b.mp_w, C * F));
    }
    w.add("model.norm.weight", {C}, slice(P, t.lnf_w, C));
    w.add("score.weight", {H, C}, slice(P, t.head_w, H * C));
    cfg = {{"architectures", {"LlamaForSequenceClassification"}}, {"model_type", "llama"},
           {"hidden_size", C}, {"intermediate_size", F}, {"num_hidden_layers", c.n_layers},
           {"num_attention_heads", NH}, {"num_key_value_heads", NKV}, {"head_dim", HS}, {"hidden_act", "silu"},
           {"max_position_embeddings", c.max_seq_len}, {"rms_norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta},
           {"rope_scaling", nullptr}, {"attention_bias", false}, {"mlp_bias", false},
           {"tie_word_embeddings", false}, {"vocab_size", c.vocab_size}};
  } else {
    const std::string s0 = "transformer.";
    w.add(s0 + "wte.weight", {c.vocab_size, C}, slice(P, t.tok_emb, static_cast<size_t>(c.vocab_size) * C));
    w.add(s0 + "wpe.weight", {c.max_seq_len, C}, slice(P, t.pos_emb, static_cast<size_t>(c.max_seq_len) * C));
    for (int i = 0; i < c.n_layers; ++i) {
      const BlockParams& b = t.blocks[i];
      const std::string s = s0 + "h." + std::to_string(i) + ".";
      w.add(s + "ln_1.weight", {C}, slice(P, b.ln1_w, C)), w.add(s + "ln_1.bias", {C}, slice(P, b.ln1_b, C));
      w.add(s + "attn.c_attn.weight", {C, 3 * C}, transpose(slice(P, b.qkv_w, 3 * C * C), 3 * C, C));
      w.add(s + "attn.c_attn.bias", {3 * C}, slice(P, b.qkv_b, 3 * C));
      w.add(s + "attn.c_proj.weight", {C, C}, transpose(slice(P, b.proj_w, C * C), C, C));
      w.add(s + "attn.c_proj.bias", {C}, slice(P, b.proj_b, C));
      w.add(s + "ln_2.weight", {C}, slice(P, b.ln2_w, C)), w.add(s + "ln_2.bias", {C}, slice(P, b.ln2_b, C));
      w.add(s + "mlp.c_fc.weight", {C, F}, transpose(slice(P, b.fc_w, F * C), F, C));
      w.add(s + "mlp.c_fc.bias", {F}, slice(P, b.fc_b, F));
      w.add(s + "mlp.c_proj.weight", {F, C}, transpose(slice(P, b.mp_w, C * F), C, F));
      w.add(s + "mlp.c_proj.bias", {C}, slice(P, b.mp_b, C));
    }
    w.add(s0 + "ln_f.weight", {C}, slice(P, t.lnf_w, C));
    w.add(s0 + "ln_f.bias", {C},
          fold_head_bias(P.data() + t.head_w, P.data() + t.head_b, P.data() + t.lnf_b, static_cast<int>(H), static_cast<int>(C)));
    w.add("score.weight", {H, C}, slice(P, t.head_w, H * C));
    cfg = {{"architectures", {"GPT2ForSequenceClassification"}}, {"model_type", "gpt2"}, {"n_embd", C},
           {"n_layer", c.n_layers}, {"n_head", NH}, {"n_inner", F}, {"n_positions", c.max_seq_len},
           {"activation_function", "gelu_new"}, {"layer_norm_epsilon", 1e-5}, {"vocab_size", c.vocab_size},
           {"resid_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"attn_pdrop", 0.0}, {"summary_first_dropout", 0.0}};
  }
  // The pad token (see the file comment).
  int pad = -1;
  if (const std::vector<int32_t> ids = tok.encode("<|endoftext|>"); ids.size() == 1 && ids[0] != c.eos_id) pad = ids[0];
  if (pad < 0) {
    pad = c.eos_id;
    std::fprintf(stderr, "warning: no spare pad token; pad = EOS (%d): transformers reads a batch's rewards before the "
                         "first EOS\n", pad);
  }
  nlohmann::ordered_json id2label = nlohmann::ordered_json::object(), label2id = nlohmann::ordered_json::object();
  for (int h = 0; h < H; ++h) id2label[std::to_string(h)] = c.head_names[h], label2id[c.head_names[h]] = h;
  cfg.update({{"num_labels", H}, {"id2label", id2label}, {"label2id", label2id},
              {"problem_type", "regression"}, {"pad_token_id", pad}, {"bos_token_id", c.bos_id},
              {"eos_token_id", c.eos_id}, {"torch_dtype", "float32"}, {"transformers_version", "4.44.2"},
              {"cairn_version", CAIRN_VERSION}, {"cairn_head_weights", c.head_weights},
              {"cairn_chat_template", c.chat_template}});
  safetensors_write((fs::path(out) / "model.safetensors").string(), w.refs, {{"format", "pt"}});
  write_file_atomic((fs::path(out) / "config.json").string(), cfg.dump(2) + "\n");

  // Tokenizer files, and the chat template as Jinja (transformers' apply_chat_template).
  tok.save((fs::path(out) / "tokenizer.json").string());
  const std::vector<int32_t> bos = {c.bos_id}, eos = {c.eos_id}, padv = {pad};
  nlohmann::ordered_json tcfg = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"bos_token", tok.decode(bos)},
                                 {"eos_token", tok.decode(eos)}, {"pad_token", tok.decode(padv)},
                                 {"model_max_length", c.max_seq_len}, {"add_bos_token", tok.add_bos()},
                                 {"add_eos_token", tok.add_eos()}, {"clean_up_tokenization_spaces", false},
                                 // no token_type_ids: GPT-2 would add wte[token_type_ids] to its input
                                 {"model_input_names", {"input_ids", "attention_mask"}}};
  if (c.chat_template == "chatml") {
    std::string sys;
    if (!c.chat_system.empty())
      sys = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n" + c.chat_system +
            "<|im_end|>\n' }}{% endif %}";
    tcfg["chat_template"] = "{% for message in messages %}" + sys +
                            "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
                            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
  } else if (c.chat_template == "llama3") {
    tcfg["chat_template"] = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                            "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}";
  }
  write_file_atomic((fs::path(out) / "tokenizer_config.json").string(), tcfg.dump(2) + "\n");
  nlohmann::ordered_json special = {{"bos_token", tok.decode(bos)}, {"eos_token", tok.decode(eos)}, {"pad_token", tok.decode(padv)}};
  write_file_atomic((fs::path(out) / "special_tokens_map.json").string(), special.dump(2) + "\n");
}

}  // namespace cairn
