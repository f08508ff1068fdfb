// The run directory (docs/run-directory.md): config.json, model.safetensors, optimizer.safetensors,
// trainer_state.json. See include/cairn/checkpoint.h for the commit protocol.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "cairn/model.h"
#include "cairn/optim.h"
#include "cairn/version.h"

namespace fs = std::filesystem;

namespace cairn {
namespace {

std::string join(const std::string& dir, const char* name) { return (fs::path(dir) / name).string(); }

nlohmann::json parse_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path, 0, "not valid JSON");
  }
}

// The table's tensors in `base`, which holds parameters [begin, total) (those below: zeros).
std::vector<TensorRef> table_refs(const ParamTable& t, const float* base, const std::string& prefix = "", size_t begin = 0) {
  std::vector<TensorRef> refs;
  for (const auto& p : t.tensors()) refs.push_back({prefix + p.name, p.shape, p.offset < begin ? nullptr : base + (p.offset - begin)});
  return refs;
}

// Checks that every tensor of the table (under prefix) is in the file with its exact shape.
// Runs before anything of the table's size is allocated: a config.json claiming a huge model next
// to a small weights file is a DataError, not a multi-gigabyte allocation.
void check_shapes(const SafetensorsFile& f, const ParamTable& t, const std::string& prefix) {
  for (const auto& p : t.tensors()) {
    const SafetensorsEntry* e = f.find(prefix + p.name);
    if (!e) throw DataError(f.path(), 0, "missing tensor \"" + prefix + p.name + "\"");
    if (e->shape != p.shape) {
      std::string got, want;
      for (auto d : e->shape) got += (got.empty() ? "" : ",") + std::to_string(d);
      for (auto d : p.shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      throw DataError(f.path(), 0, "tensor \"" + prefix + p.name + "\" has shape [" + got + "], config.json implies [" + want + "]");
    }
  }
}

// Reads the table's tensors (under prefix) from the file, each checked finite, into `dst`, a buffer
// of backend `be` (host memory when null) holding the parameters from offset `begin` (a tensor
// boundary; the tensors below it are not read). One tensor at a time passes through host memory on
// a device backend; on a host one the file is read straight into `dst`.
void read_table(const SafetensorsFile& f, const ParamTable& t, const std::string& prefix, Backend* be, float* dst,
                size_t begin = 0) {
  std::vector<float> staging;
  for (const auto& p : t.tensors()) {
    if (p.offset < begin) continue;
    const std::string name = prefix + p.name;
    float* out = dst + (p.offset - begin);
    const bool direct = !be || be->host_memory();
    if (!direct) staging.resize(p.numel);
    float* host = direct ? out : staging.data();
    f.read(name, host);
    require_finite(host, p.numel, name, f.path());
    if (!direct) be->to_device(out, host, p.numel * sizeof(float));
  }
}

}  // namespace

void require_finite(const float* d, size_t n, const std::string& tensor, const std::string& path) {
  const float* bad = std::find_if(d, d + n, [](float x) { return !std::isfinite(x); });
  if (bad != d + n)
    throw DataError(path, 0, "tensor \"" + tensor + "\" holds " + (std::isnan(*bad) ? "NaN" : "an infinity") +
                                 " at index " + std::to_string(bad - d));
}

nlohmann::json config_to_json(const ModelConfig& c) {
  nlohmann::json j = {{"model_type", "cairn-reward"}, {"cairn_version", CAIRN_VERSION}, {"arch", c.arch},
                      {"vocab_size", c.vocab_size}, {"max_seq_len", c.max_seq_len}, {"d_model", c.d_model},
                      {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"d_ff", c.d_ff},
                      {"n_heads_out", c.n_heads_out}, {"head_names", c.head_names}, {"head_weights", c.head_weights},
                      {"pad_id", c.pad_id}, {"bos_id", c.bos_id}, {"eos_id", c.eos_id},
                      {"chat_template", c.chat_template}};
  if (!c.chat_system.empty()) j["chat_system"] = c.chat_system;
  if (c.is_llama()) {
    j.update({{"n_kv_heads", c.kv_heads()}, {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps},
              {"tie_embeddings", c.tie_embeddings}, {"activation", "swiglu"}, {"positional", "rope"},
              {"norm", "pre_rmsnorm"}, {"reward_position", "last"}});
  } else {
    j.update({{"ln_eps", 1e-5}, {"activation", "gelu_tanh"}, {"positional", "learned"}, {"norm", "pre_ln"},
              {"reward_position", "eos"}});
  }
  return j;
}

ModelConfig config_from_json(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) throw DataError(path, 0, "config is not a JSON object");
  ModelConfig c;
  auto get_int = [&](const char* k, int& dst, bool required = true) {
    auto it = j.find(k);
    if (it == j.end() && !required) return;
    if (it == j.end()) throw DataError(path, 0, std::string("missing field \"") + k + "\"");
    if (!it->is_number_integer()) throw DataError(path, 0, std::string("field \"") + k + "\" must be an integer");
    const int64_t v = it->get<int64_t>();
    if (v < -1 || v > (1 << 24)) throw DataError(path, 0, std::string("field \"") + k + "\" out of range");
    dst = static_cast<int>(v);
  };
  get_int("vocab_size", c.vocab_size), get_int("max_seq_len", c.max_seq_len), get_int("d_model", c.d_model);
  get_int("n_layers", c.n_layers), get_int("n_heads", c.n_heads), get_int("d_ff", c.d_ff);
  get_int("n_heads_out", c.n_heads_out), get_int("pad_id", c.pad_id), get_int("bos_id", c.bos_id);
  get_int("eos_id", c.eos_id);
  get_int("n_kv_heads", c.n_kv_heads, /*required=*/false);  // not j.value<int>: 1e30 → int is undefined
  try {
    c.arch = j.value("arch", std::string("gpt2"));  // runs written before the llama family are gpt2
    c.rope_theta = j.value("rope_theta", 10000.0f);
    c.norm_eps = j.value("norm_eps", 1e-5f);
    c.tie_embeddings = j.value("tie_embeddings", false);
    c.chat_template = j.value("chat_template", std::string("plain"));
    c.chat_system = j.value("chat_system", std::string());
  } catch (const nlohmann::json::exception&) {
    throw DataError(path, 0, "arch and chat_template must be strings, rope_theta and norm_eps numbers");
  }
  std::vector<double> weights;
  try {
    c.head_names = j.value("head_names", std::vector<std::string>{"reward"});
    weights = j.value("head_weights", std::vector<double>(c.n_heads_out, 1.0));
  } catch (const nlohmann::json::exception&) {
    throw DataError(path, 0, "head_names must be strings and head_weights numbers");
  }
  for (double w : weights)
    if (!(std::fabs(w) <= FLT_MAX)) {
      char v[32];
      std::snprintf(v, sizeof v, "%g", w);
      throw DataError(path, 0, std::string("field \"head_weights\" holds ") + v + ": weights must be finite float32 numbers");
    }
  c.head_weights.assign(weights.begin(), weights.end());
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw DataError(path, 0, e.what());
  }
  return c;
}

ModelConfig read_config(const std::string& dir) {
  const std::string p = join(dir, "config.json");
  return config_from_json(parse_json_file(p), p);
}

void load_model(const std::string& dir, ModelConfig* cfg, std::vector<float>* params) {
  *cfg = read_config(dir);
  ParamTable t(*cfg);
  const SafetensorsFile f(join(dir, "model.safetensors"));
  if (f.tensors().size() != t.tensors().size())
    for (const auto& [name, _] : f.tensors())
      if (!t.find(name)) throw DataError(f.path(), 0, "unexpected tensor \"" + name + "\" (not in this config)");
  check_shapes(f, t, "");  // before allocating t.total() floats
  params->assign(t.total(), 0.0f);
  read_table(f, t, "", nullptr, params->data());
}

void save_config(const std::string& dir, const ModelConfig& cfg) {
  write_file_atomic(join(dir, "config.json"), config_to_json(cfg).dump(2) + "\n");
}

void save_model(const std::string& dir, const ModelConfig& cfg, const float* params) {
  ParamTable t(cfg);
  safetensors_write(join(dir, "model.safetensors"), table_refs(t, params), {{"format", "pt"}});
  save_config(dir, cfg);
}

namespace {
// Step 2 of the commit protocol: the files users and tools read, from the committed state.
void write_run_files(const std::string& dir, const ModelConfig& cfg, const float* params, const nlohmann::json& st) {
  save_model(dir, cfg, params);
  write_file_atomic(join(dir, "trainer_state.json"), st.dump(2) + "\n");
}

// The fields resume reads (docs/run-directory.md#trainer-state), each of its type and range:
// the range train's own flags are checked against, so a bad saved value is this file's fault.
void check_trainer_state(const nlohmann::json& st, const std::string& path) {
  if (!st.is_object()) throw DataError(path, 0, "trainer_state is not a JSON object");
  if (!st.contains("step")) throw DataError(path, 0, "trainer_state has no step");
  auto need = [&](const nlohmann::json& obj, const std::string& where, const char* key, const char* what, auto ok) {
    if (obj.contains(key) && !ok(obj[key]))
      throw DataError(path, 0, where + "\"" + key + "\" must be " + what + ": " + obj[key].dump());
  };
  auto integer_from = [](int64_t lo) {
    return [lo](const nlohmann::json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= std::numeric_limits<int>::max();
    };
  };
  auto number_in = [](double lo, double hi, bool open_lo = false) {  // a float32 value in [lo, hi] (or (lo, hi])
    return [=](const nlohmann::json& v) {
      if (!v.is_number()) return false;
      const double x = v.get<double>();
      return std::isfinite(x) && std::fabs(x) <= FLT_MAX && (open_lo ? x > lo : x >= lo) && x <= hi;
    };
  };
  auto seed = [](const nlohmann::json& v) { return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0); };
  const std::string top = "trainer_state ";
  for (const char* k : {"step", "epoch", "epoch_pos", "optimizer_step"}) need(st, top, k, "an integer in [0, 2^31)", integer_from(0));
  need(st, top, "seed", "an integer ≥ 0", seed);
  need(st, top, "best_valid_acc", "a finite number", number_in(-FLT_MAX, FLT_MAX));
  need(st, top, "validation_pending", "true or false", [](const nlohmann::json& v) { return v.is_boolean(); });
  // (null: a trainer run without command-line flags, as the library's tests do)
  need(st, top, "flags", "an object", [](const nlohmann::json& v) { return v.is_object() || v.is_null(); });
  if (!st.contains("flags") || st["flags"].is_null()) return;
  const nlohmann::json& f = st["flags"];
  const std::string in = "trainer_state flags ";
  need(f, in, "train", "a string", [](const nlohmann::json& v) { return v.is_string(); });
  need(f, in, "seed", "an integer ≥ 0", seed);
  for (const char* k : {"batch_pairs", "total_steps"}) need(f, in, k, "an integer in [1, 2^31)", integer_from(1));
  for (const char* k : {"warmup", "freeze_layers"}) need(f, in, k, "an integer in [0, 2^31)", integer_from(0));
  need(f, in, "lr", "a float32 number > 0", number_in(0, FLT_MAX, true));
  need(f, in, "min_lr_ratio", "a number in [0, 1]", number_in(0, 1));
  for (const char* k : {"weight_decay", "clip", "center_coef", "length_lambda"}) need(f, in, k, "a float32 number ≥ 0", number_in(0, FLT_MAX));
  need(f, in, "margin", "a float32 number", number_in(-FLT_MAX, FLT_MAX));
}

// The trainer state in the metadata of optimizer.safetensors (`path`), checked.
nlohmann::json trainer_state_of(const std::map<std::string, std::string>& meta, const std::string& path) {
  nlohmann::json st;
  try {
    st = nlohmann::json::parse(meta.at("trainer_state"));
  } catch (const std::exception&) {
    throw DataError(path, 0, "missing or invalid trainer_state metadata");
  }
  check_trainer_state(st, path);
  return st;
}
}  // namespace

void save_checkpoint(const std::string& dir, Model& model, AdamW& opt, const nlohmann::json& state) {
  const ParamTable& t = model.table();
  Backend& be = model.backend();
  const size_t k = opt.moments_begin(), nm = opt.moments_size();
  // Written straight from the buffers on a host backend; a device's are copied to host first.
  const float *p = model.params(), *m = opt.m(), *v = opt.v();
  std::vector<float> hp, hm, hv;
  if (!be.host_memory()) {
    hp.resize(t.total()), hm.resize(nm), hv.resize(nm);
    model.get_params(hp.data());
    be.to_host(hm.data(), m, nm * sizeof(float));
    be.to_host(hv.data(), v, nm * sizeof(float));
    p = hp.data(), m = hm.data(), v = hv.data();
  }
  // frozen parameters have no moments: written as 0, as if never updated
  std::vector<TensorRef> refs = table_refs(t, p, "param.");
  for (auto& r : table_refs(t, m, "exp_avg.", k)) refs.push_back(r);
  for (auto& r : table_refs(t, v, "exp_avg_sq.", k)) refs.push_back(r);
  nlohmann::json st = state;
  st["optimizer_step"] = opt.steps_done();
  // 1. the commit point: one file holding everything needed to resume
  safetensors_write(join(dir, "optimizer.safetensors"), refs, {{"trainer_state", st.dump()}});
  // 2. the files users and tools read
  write_run_files(dir, model.config(), p, st);
}

nlohmann::json load_checkpoint(const std::string& dir, Model& model, AdamW& opt) {
  const SafetensorsFile f(join(dir, "optimizer.safetensors"));
  const nlohmann::json st = trainer_state_of(f.metadata(), f.path());
  const ParamTable& t = model.table();
  for (const char* prefix : {"param.", "exp_avg.", "exp_avg_sq."}) check_shapes(f, t, prefix);
  // Straight into the model's and the optimizer's buffers, a tensor at a time. Moments of parameters
  // frozen in this run are not read (they get no update while frozen).
  Backend& be = model.backend();
  read_table(f, t, "param.", &be, model.params());
  read_table(f, t, "exp_avg.", &be, opt.m(), opt.moments_begin());
  read_table(f, t, "exp_avg_sq.", &be, opt.v(), opt.moments_begin());
  opt.set_steps_done(st.value("optimizer_step", st["step"].get<int>()));
  // A kill between the commit and the last derived write left those files one checkpoint behind:
  // rewrite them from the commit point, so they never lag the resumed state.
  std::vector<float> host;
  if (!be.host_memory()) host.resize(t.total()), model.get_params(host.data());
  write_run_files(dir, model.config(), be.host_memory() ? model.params() : host.data(), st);
  return st;
}

const std::vector<std::string>& run_dir_files() {
  static const std::vector<std::string> files = {"optimizer.safetensors", "model.safetensors", "config.json",
                                                 "trainer_state.json",    "metrics.jsonl",     "tokenizer.model",
                                                 "tokenizer.json",        "tokenizer_config.json"};
  return files;
}

std::vector<std::string> remove_stale_run_temp_files(const std::string& dir) {
  return remove_stale_temp_files(dir, run_dir_files());
}

nlohmann::json read_trainer_state(const std::string& dir) {
  // The resume point is optimizer.safetensors (see the commit protocol); trainer_state.json mirrors it.
  const std::string p = join(dir, "optimizer.safetensors");
  return trainer_state_of(SafetensorsFile(p).metadata(), p);
}

}  // namespace cairn
