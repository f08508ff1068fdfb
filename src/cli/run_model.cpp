// load_run, see run_model.h.
#include "cli/run_model.h"

#include <filesystem>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"

namespace cairn::cli {

std::unique_ptr<Tokenizer> load_run_tokenizer_for(const std::string& dir, const ModelConfig& cfg) {
  std::unique_ptr<Tokenizer> tok = load_run_tokenizer(dir);
  if (tok->vocab_size() > cfg.vocab_size)
    throw DataError(dir, 0, tok->file_name() + " has " + std::to_string(tok->vocab_size()) +
                                " tokens but config.json's vocab_size is only " + std::to_string(cfg.vocab_size));
  return tok;
}

LoadedRun load_run(const std::string& dir, const BackendOptions& backend) {
  if (!std::filesystem::is_directory(dir)) throw DataError(dir, 0, "not a run directory");
  LoadedRun r;
  ModelConfig cfg;
  std::vector<float> params;
  load_model(dir, &cfg, &params);
  r.tokenizer = load_run_tokenizer_for(dir, cfg);
  r.backend = make_backend(backend);
  r.model = std::make_unique<Model>(cfg, *r.backend);
  r.model->set_params(params.data());
  return r;
}

}  // namespace cairn::cli
