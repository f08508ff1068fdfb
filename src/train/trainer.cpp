// The training loop, see trainer.h.
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "train/eval_pairs.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "util/timing.h"

namespace cairn {

Trainer::Trainer(const TrainSettings& settings, Model& model, std::vector<TokenizedPair> train,
                 std::vector<TokenizedPair> valid)
    : s_(settings), model_(model), opt_(model, settings.optim), obj_(model, settings.center_coef),
      train_(std::move(train)), valid_(std::move(valid)) {
  if (train_.empty()) throw std::invalid_argument("Trainer: no training pairs");
  if (s_.batch_pairs < 1 || s_.total_steps < 1 || s_.log_every < 1 || s_.eval_every < 1 || s_.save_every < 1)
    throw std::invalid_argument("Trainer: batch size, steps and cadences must be ≥ 1");
  if (model_.config().length_head() >= 0) obj_.set_length_lambda(s_.length_lambda);
}

nlohmann::json Trainer::state_json(const char* why) const {
  nlohmann::json st = {{"step", progress_.step}, {"epoch", progress_.epoch}, {"epoch_pos", progress_.epoch_pos},
                       {"seed", s_.seed}, {"best_valid_acc", progress_.best_valid_acc}, {"flags", s_.flags},
                       {"saved_because", why}};
  if (progress_.validation_pending) st["validation_pending"] = true;
  return st;
}

void Trainer::save(const char* why) { save_checkpoint(s_.out_dir, model_, opt_, state_json(why)); }

void Trainer::resume() {
  const nlohmann::json st = load_checkpoint(s_.out_dir, model_, opt_);
  progress_.step = st.at("step").get<int>();
  progress_.epoch = st.value("epoch", 0);
  progress_.epoch_pos = st.value("epoch_pos", 0L);
  progress_.best_valid_acc = st.value("best_valid_acc", -1.0);
  progress_.validation_pending = st.value("validation_pending", false);
  s_.seed = st.value("seed", s_.seed);  // the data order continues the saved run's
  s_.flags["seed"] = s_.seed;
}

nlohmann::json Trainer::validate() {
  nlohmann::json rec = nlohmann::json::object();
  if (valid_.empty()) return rec;
  PairScores sc = score_pairs(obj_, model_.config(), valid_, s_.eval_batch_pairs, s_.prefix_sharing);
  rec["valid_loss"] = sc.bt_loss;
  rec["valid_acc"] = sc.accuracy();
  rec["valid_pairs"] = valid_.size();
  progress_.best_valid_acc = std::max(progress_.best_valid_acc, sc.accuracy());
  return rec;
}

Trainer::Outcome Trainer::run(const std::atomic<bool>& stop) {
  const int total = s_.total_steps, B = s_.batch_pairs;
  MetricsLog metrics((std::filesystem::path(s_.out_dir) / "metrics.jsonl").string(),
                     progress_.step > 0 ? progress_.step : -1);
  TrainProgress& p = progress_;
  std::vector<size_t> order = epoch_order(train_.size(), train_, s_.seed, p.epoch, B);
  TokenBatch batch;
  std::vector<PairTarget> targets;
  std::vector<float> lengths;
  Progress line("step", total);
  int saved_step = -1;  // the step of the last checkpoint this call wrote
  // the metrics window: what one metrics.jsonl line averages
  double win_loss = 0, win_tokens = 0, win_pairs = 0, win_t0 = now_seconds();
  int win_correct = 0, win_decided = 0, win_steps = 0;
  // SIGINT/SIGTERM stop the step (or validation) in flight at its next block boundary: a step that
  // throws Interrupted never reached the optimizer, so the checkpoint holds the last completed step.
  model_.set_interrupt(&stop);
  struct Unset {
    Model& m;
    ~Unset() { m.set_interrupt(nullptr); }
  } unset{model_};
  if (p.validation_pending) {  // the validation an interrupt cut short, as its own metrics line
    try {
      nlohmann::json rec = validate();
      rec["step"] = p.step;
      std::fprintf(stderr, "step %d/%d  valid_loss %.4f  valid_acc %.4f (the interrupted validation)\n", p.step, total,
                   rec["valid_loss"].get<double>(), rec["valid_acc"].get<double>());
      metrics.write(rec);
      p.validation_pending = false;
      save(p.step == total ? "final" : "periodic"), saved_step = p.step;
    } catch (const Interrupted&) {
      return Outcome::Interrupted;  // the checkpoint on disk still says pending
    }
  }
  while (p.step < total && !stop) {
    if (p.epoch_pos >= static_cast<long>(train_.size())) {
      ++p.epoch, p.epoch_pos = 0;
      order = epoch_order(train_.size(), train_, s_.seed, p.epoch, B);
    }
    const size_t e = std::min(train_.size(), static_cast<size_t>(p.epoch_pos) + B);
    build_batch(train_, order, p.epoch_pos, e, s_.prefix_sharing, &batch, &targets, &lengths);
    StepStats st;
    try {
      st = obj_.train_step(opt_, batch, targets, &lengths);
    } catch (const Interrupted&) {
      break;
    }
    p.epoch_pos = static_cast<long>(e);
    ++p.step;
    if (!std::isfinite(st.loss.loss)) throw std::runtime_error("loss became non-finite at step " + std::to_string(p.step));
    // tokens/s counts the sequences' tokens (what the data holds), the same with or without sharing
    win_loss += st.loss.loss, win_tokens += batch.sequence_tokens(), win_pairs += targets.size(), ++win_steps;
    win_correct += st.loss.n_correct, win_decided += st.loss.n_decided;

    const bool last = p.step == total;
    const bool log_now = p.step % s_.log_every == 0 || last;
    const bool eval_now = p.step % s_.eval_every == 0 || last;
    if (log_now || (eval_now && !valid_.empty())) {
      const double dt = std::max(1e-9, now_seconds() - win_t0);
      const double acc = win_decided ? static_cast<double>(win_correct) / win_decided : 0.0;
      nlohmann::json rec = {{"step", p.step}, {"epoch", p.epoch + static_cast<double>(p.epoch_pos) / train_.size()},
                            {"loss", win_loss / win_steps}, {"acc", acc}, {"lr", st.lr},
                            {"grad_norm", st.grad_norm}, {"tokens_per_s", win_tokens / dt},
                            {"pairs_per_s", win_pairs / dt}};
      char fields[200];
      std::snprintf(fields, sizeof fields, "loss %.4f  acc %.3f  lr %.2e  |g| %.3f  %.0f tok/s", win_loss / win_steps,
                    acc, st.lr, st.grad_norm, win_tokens / dt);
      if (eval_now && !valid_.empty()) {
        line.finish();
        try {
          rec.update(validate());
          std::fprintf(stderr, "step %d/%d  valid_loss %.4f  valid_acc %.4f\n", p.step, total,
                       rec["valid_loss"].get<double>(), rec["valid_acc"].get<double>());
        } catch (const Interrupted&) {
          std::fprintf(stderr, "step %d/%d  validation interrupted (redone on resume)\n", p.step, total);
          p.validation_pending = true;
        }
      }
      metrics.write(rec);
      line.update(p.step, fields, true);
      win_loss = win_tokens = win_pairs = 0, win_correct = win_decided = win_steps = 0, win_t0 = now_seconds();
    }
    if (p.validation_pending) break;  // saved below as interrupted
    if (p.step % s_.save_every == 0 || last) save(last ? "final" : "periodic"), saved_step = p.step;
  }
  line.finish();
  if (p.step < total || p.validation_pending) {
    if (saved_step != p.step) save("interrupted");
    return Outcome::Interrupted;
  }
  return Outcome::Done;
}

}  // namespace cairn
