// A run directory as `cairn score` / `eval` / `train --resume` load it (src/io/run_dir.cpp,
// src/model/config.cpp): input = config.json NUL model.safetensors. config_from_json runs in
// memory, then both files go into a directory for read_config, load_model and read_trainer_state (the
// same safetensors bytes as optimizer.safetensors). Invariants: a config that loads is valid and
// survives config_to_json → config_from_json; load_model gives exactly ParamTable(cfg).total() floats.
#include "cairn/checkpoint.h"
#include "cairn/params.h"
#include "fuzz.h"

using namespace cairn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir dir("run_dir");
  const std::vector<std::string> p = fuzz::parts(data, size, 2);
  fuzz::expect_data_error([&] {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(p[0]);
    } catch (const nlohmann::json::exception&) {
      return;  // not JSON: read_config's own error, below
    }
    const ModelConfig c = config_from_json(j, "config.json");
    c.validate();  // std::invalid_argument here would be a finding
    const nlohmann::json out = config_to_json(c);
    fuzz::check(config_to_json(config_from_json(out, "config.json")) == out, "config_to_json → config_from_json changed it");
  });
  dir.write("config.json", p[0]);
  dir.write("model.safetensors", p[1]);
  dir.write("optimizer.safetensors", p[1]);
  fuzz::expect_data_error([&] { read_config(dir.path()); });
  fuzz::expect_data_error([&] {
    ModelConfig cfg;
    std::vector<float> params;
    load_model(dir.path(), &cfg, &params);
    fuzz::check(params.size() == ParamTable(cfg).total(), "load_model: parameter count differs from the table");
  });
  fuzz::expect_data_error([&] { read_trainer_state(dir.path()); });
  return 0;
}
