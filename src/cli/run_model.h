// Loading a run directory for inference (score, eval): config + weights + tokenizer on a backend.
#pragma once
#include <memory>
#include <string>

#include "cairn/backend.h"
#include "cairn/model.h"
#include "cairn/tokenizer.h"

namespace cairn::cli {

struct LoadedRun {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

LoadedRun load_run(const std::string& dir, const BackendOptions& backend);
// The run's tokenizer, checked against its config: more tokens than vocab_size is a DataError.
std::unique_ptr<Tokenizer> load_run_tokenizer_for(const std::string& dir, const ModelConfig& cfg);

}  // namespace cairn::cli
