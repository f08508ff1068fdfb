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
void require_finite(const float* data, size_t n, const std::string& tensor, const std::string& path);
inline void require_finite(const std::vector<float>& data, const std::string& tensor, const std::string& path) {
  require_finite(data.data(), data.size(), tensor, path);
}

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

// A tensor of a safetensors file: where its bytes are (from the start of the data section).
struct SafetensorsEntry {
  std::vector<int64_t> shape;
  std::string dtype;  // F32, F16 or BF16
  uint64_t offset = 0;
  uint64_t numel = 1;
  uint64_t element_size() const;  // 4 or 2 (0: a dtype cairn does not read)
};

// A safetensors file read tensor by tensor, as GgufFile is: opening it reads the header and checks
// it exactly as safetensors_parse does (against the file's size); read() then takes one tensor from
// disk straight into the caller's memory, so loading a checkpoint never holds the file, or a parsed
// copy of it, in memory. A file that shrinks while open is a DataError naming it, not a crash.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // DataError naming `path`
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) = delete;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;  // nullptr when absent
  // The tensor's numel values, widened to fp32, into dst (DataError when absent or unreadable).
  void read(const std::string& name, float* dst) const;
  LoadedTensor load(const std::string& name) const;

 private:
  void read_at(uint64_t offset, void* dst, uint64_t n) const;

  std::string path_;
  int fd_ = -1;
  uint64_t data_offset_ = 0;  // absolute file offset of the data section
  std::map<std::string, SafetensorsEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

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
