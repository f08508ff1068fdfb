// The training loop of `cairn train`: steps over seeded, length-bucketed epochs, a metrics window per
// --log-every steps (metrics.jsonl + the progress line), validation every eval_every steps and at the
// end, checkpoints every save_every steps, at the end and when stopped. The CLI resolves the settings
// (flags, merged with a resumed run's saved flags) and builds the model and data; the trainer owns
// the optimizer, the objective and the loop. See docs/run-directory.md for what is written.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/dist.h"
#include "cairn/model.h"
#include "cairn/objective.h"
#include "cairn/optim.h"
#include "dist/grad_sync.h"
#include "train/batching.h"

namespace cairn {

struct TrainSettings {
  std::string out_dir;
  int batch_pairs = 16;       // pairs per optimizer step
  int total_steps = 1;
  int log_every = 10;         // steps per metrics.jsonl line
  int eval_every = 1;         // steps between validations (and a validation at the last step)
  int save_every = 1;         // steps between checkpoints (and one at the last step)
  int eval_batch_pairs = 32;  // pairs per validation forward
  bool prefix_sharing = true; // pack each pair's common token prefix once (docs/model.md#prefix-sharing)
  OptimConfig optim;
  float center_coef = 0.0f;
  float length_lambda = 0.0f;  // used when the model has a length head
  uint64_t seed = 1;           // data order (the model is initialised by the caller)
  bool grad_overlap = true;    // data parallel: sum each layer's gradients while backward goes on
  nlohmann::json flags;        // resolved flags, saved in trainer_state.json for --resume
};

// Where a run stands; saved in every checkpoint's trainer state and restored on resume.
struct TrainProgress {
  int step = 0;
  int epoch = 0;
  long epoch_pos = 0;  // pairs of the current epoch already consumed
  double best_valid_acc = -1;
  bool validation_pending = false;  // the validation at `step` was interrupted: redone on resume
};

// Data parallel (docs/distributed.md): under a launcher with K ranks (dist::world()), every rank runs
// this loop over the same data order; each takes its slice of every global batch of batch_pairs
// pairs, the loss is the global batch's (BTObjective::forward_backward_shard), the gradients are
// summed over the ranks (GradSync) and every rank takes the same optimizer step. Validation splits
// the valid pairs over the ranks. Only rank 0 writes metrics and checkpoints. A stop (Ctrl-C) is
// agreed at each step boundary, so all ranks stop after the same step.
class Trainer {
 public:
  // train must not be empty. valid may be.
  Trainer(const TrainSettings& settings, Model& model, std::vector<TokenizedPair> train,
          std::vector<TokenizedPair> valid);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Restores parameters, optimizer moments and progress from the checkpoint in settings.out_dir.
  void resume();
  const TrainProgress& progress() const { return progress_; }

  enum class Outcome { Done, Interrupted };
  // Trains up to total_steps, or until `stop` is set (checked between steps and, through
  // Model::set_interrupt, at every block of a step or validation in flight): a checkpoint is then
  // saved at the last completed step and Interrupted returned.
  Outcome run(const std::atomic<bool>& stop);

  // Validation over the valid pairs with the scoring composite: valid_loss, valid_acc, valid_pairs.
  nlohmann::json validate();

 private:
  void save(const char* why);
  nlohmann::json state_json(const char* why) const;
  StepStats step(const std::vector<size_t>& order, size_t b, size_t e);
  // Data parallel: throws unless every rank holds rank 0's parameters bit for bit.
  void check_ranks_agree(const char* when);

  TrainSettings s_;
  Model& model_;
  AdamW opt_;
  BTObjective obj_;
  std::vector<TokenizedPair> train_, valid_;
  TrainProgress progress_;
  dist::Comm& comm_;
  std::unique_ptr<dist::GradSync> sync_;  // data parallel only
  TokenBatch batch_;
  std::vector<PairTarget> targets_, mine_;
  std::vector<float> lengths_;
};

}  // namespace cairn
