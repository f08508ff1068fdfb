// safetensors and the run directory (docs/run-directory.md#safetensors-format, docs/run-directory.md#commit-protocol).
//
// Commit protocol. A checkpoint is committed by ONE atomic rename: optimizer.safetensors holds the
// parameters, both Adam moments and the trainer state (in its __metadata__), so it is always a
// consistent resume point on its own. model.safetensors, config.json, tokenizer.model and
// trainer_state.json are written (each atomically) for users and other tools; a run killed between
// two of these writes resumes from optimizer.safetensors, and load_checkpoint rewrites them. A fresh
// run writes config.json and its tokenizer before the first step, so the first commit can resume.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/config.h"
#include "cairn/params.h"

namespace cairn {

class Model;
class AdamW;

struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // host memory; nullptr: all zeros (written without a buffer)
};
struct LoadedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// A NaN or infinity in `data` is a DataError naming `path`, the tensor and the first bad index: such
// weights only produce non-finite rewards and losses. Checked on every checkpoint and import load.
void require_finite(const std::vector<float>& data, const std::string& tensor, const std::string& path);

// Serializes F32 tensors (in the given order) with optional string metadata.
std::string safetensors_serialize(const std::vector<TensorRef>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// The same bytes, streamed into `path` atomically (include/cairn/io.h) straight from the tensors'
// memory: no copy of the file is built (a checkpoint of a 135M-parameter model is 1.6 GB).
void safetensors_write(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Parses and validates everything (sizes, offsets, dtypes, shapes, overlaps, duplicates); throws
// DataError naming `path` on anything wrong. Never trusts a size it has not checked.
std::map<std::string, LoadedTensor> safetensors_parse(const std::string& bytes, const std::string& path,
                                                      std::map<std::string, std::string>* metadata = nullptr);

// The __metadata__ of a safetensors file, from its header alone (the tensors are neither read nor
// checked); DataError naming `path` when the header is unreadable.
std::map<std::string, std::string> safetensors_read_metadata(const std::string& path);

nlohmann::json config_to_json(const ModelConfig& cfg);
ModelConfig config_from_json(const nlohmann::json& j, const std::string& path);  // DataError on bad fields
ModelConfig read_config(const std::string& run_dir);

// The model of a run directory: config.json + model.safetensors, every tensor checked against the
// table (missing, extra or mis-shaped → DataError naming the tensor).
void load_model(const std::string& run_dir, ModelConfig* cfg, std::vector<float>* params);
void save_model(const std::string& run_dir, const ModelConfig& cfg, const float* host_params);
void save_config(const std::string& run_dir, const ModelConfig& cfg);  // config.json alone

// Full training checkpoint (see the commit protocol above).
void save_checkpoint(const std::string& run_dir, Model& model, AdamW& opt, const nlohmann::json& trainer_state);
// Restores params + moments into model/opt and returns the trainer state (counters checked: integers
// ≥ 0, else DataError). Rewrites model.safetensors, config.json and trainer_state.json from it.
nlohmann::json load_checkpoint(const std::string& run_dir, Model& model, AdamW& opt);
// The trainer state of the checkpoint (header of optimizer.safetensors), its fields checked as load_checkpoint does.
nlohmann::json read_trainer_state(const std::string& run_dir);
// The files a run directory holds (each written atomically by train).
const std::vector<std::string>& run_dir_files();
// Removes the temp files of the run directory's own files left by a killed writer (see
// remove_stale_temp_files in include/cairn/io.h); returns their names.
std::vector<std::string> remove_stale_run_temp_files(const std::string& run_dir);

}  // namespace cairn
