// The training loop, see trainer.h.
#include "train/trainer.h"

#include <zlib.h>

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
      train_(std::move(train)), valid_(std::move(valid)), comm_(dist::world()) {
  if (train_.empty()) throw std::invalid_argument("Trainer: no training pairs");
  if (s_.batch_pairs < 1 || s_.total_steps < 1 || s_.log_every < 1 || s_.eval_every < 1 || s_.save_every < 1)
    throw std::invalid_argument("Trainer: batch size, steps and cadences must be ≥ 1");
  if (model_.config().length_head() >= 0) obj_.set_length_lambda(s_.length_lambda);
  if (comm_.launched()) {
    sync_ = dist::make_grad_sync(comm_, model_.backend(), model_.grads(), model_.grad_buckets(), s_.grad_overlap);
    model_.set_grad_ready([this](int layer) { sync_->ready(layer); });
  }
}

Trainer::~Trainer() { model_.set_grad_ready(nullptr); }

void Trainer::check_ranks_agree(const char* when) {
  if (!comm_.distributed()) return;
  std::vector<float> w(model_.num_params());
  model_.get_params(w.data());
  const uLong mine = crc32_z(0L, reinterpret_cast<const Bytef*>(w.data()), w.size() * sizeof(float));
  uLong root = mine;
  comm_.bcast(&root, sizeof root, 0);
  if (!comm_.any(root != mine)) return;
  throw std::runtime_error(std::string("data parallel: the ranks' parameters differ ") + when +
                           (root != mine ? " (this rank differs from rank 0)" : "") +
                           "; every rank must read the same run directory, data and --init (a shared filesystem)");
}

StepStats Trainer::step(const std::vector<size_t>& order, size_t b, size_t e) {
  if (!sync_) {
    build_batch(train_, order, b, e, s_.prefix_sharing, &batch_, &targets_, &lengths_);
    return obj_.train_step(opt_, batch_, targets_, &lengths_);
  }
  // this rank's slice of the global batch [b, e); the loss sees the whole global batch
  const std::vector<size_t> seqs = comm_.slice_counts(e - b, 2);  // two sequences per pair
  const auto [lo, hi] = dist::slice(e - b, comm_.rank(), comm_.size());
  build_batch(train_, order, b + lo, b + hi, s_.prefix_sharing, &batch_, &mine_);
  pair_targets(train_, order, b, e, &targets_, &lengths_);
  StepStats st;
  model_.zero_grads();
  st.loss = obj_.forward_backward_shard(comm_, seqs, batch_, targets_, &lengths_);
  sync_->finish();
  st.grad_norm = opt_.step();
  st.lr = opt_.last_lr();
  return st;
}

nlohmann::json Trainer::state_json(const char* why) const {
  nlohmann::json st = {{"step", progress_.step}, {"epoch", progress_.epoch}, {"epoch_pos", progress_.epoch_pos},
                       {"seed", s_.seed}, {"best_valid_acc", progress_.best_valid_acc}, {"flags", s_.flags},
                       {"saved_because", why}};
  if (progress_.validation_pending) st["validation_pending"] = true;
  return st;
}

void Trainer::save(const char* why) {
  check_ranks_agree("at a checkpoint");
  if (comm_.root()) save_checkpoint(s_.out_dir, model_, opt_, state_json(why));
}

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
  const PairScores sc = score_pairs_split(comm_, obj_, model_.config(), valid_, s_.eval_batch_pairs, s_.prefix_sharing);
  const double acc = sc.accuracy();
  rec["valid_loss"] = sc.bt_loss;
  rec["valid_acc"] = acc;
  rec["valid_pairs"] = valid_.size();
  progress_.best_valid_acc = std::max(progress_.best_valid_acc, acc);
  return rec;
}

Trainer::Outcome Trainer::run(const std::atomic<bool>& stop) {
  const int total = s_.total_steps, B = s_.batch_pairs;
  // rank 0 writes (data parallel: the others compute the same records and drop them)
  std::unique_ptr<MetricsLog> log;
  if (comm_.root())
    log = std::make_unique<MetricsLog>((std::filesystem::path(s_.out_dir) / "metrics.jsonl").string(),
                                       progress_.step > 0 ? progress_.step : -1);
  struct {
    MetricsLog* log;
    void write(const nlohmann::json& rec) {
      if (log) log->write(rec);
    }
  } metrics{log.get()};
  check_ranks_agree("at the start (after initialisation or resume)");
  TrainProgress& p = progress_;
  std::vector<size_t> order = epoch_order(train_.size(), train_, s_.seed, p.epoch, B);
  Progress line("step", total);
  int saved_step = -1;  // the step of the last checkpoint this call wrote
  // the metrics window: what one metrics.jsonl line averages
  double win_loss = 0, win_tokens = 0, win_pairs = 0, win_t0 = now_seconds(), win_comm0 = sync_ ? sync_->seconds() : 0;
  int win_correct = 0, win_decided = 0, win_steps = 0;
  // SIGINT/SIGTERM stop the step (or validation) in flight at its next block boundary: a step that
  // throws Interrupted never reached the optimizer, so the checkpoint holds the last completed step.
  // Data parallel: no rank may stop inside a step (the others would wait in its collectives), so the
  // flag is agreed over the ranks at each step boundary instead.
  model_.set_interrupt(sync_ ? nullptr : &stop);
  auto stopping = [&] { return comm_.any(stop.load()); };
  struct Unset {
    Model& m;
    ~Unset() { m.set_interrupt(nullptr); }
  } unset{model_};
  if (p.validation_pending && valid_.empty()) {  // resumed without --valid: nothing to redo
    std::fprintf(stderr, "step %d: the validation an interrupt cut short is not redone (no --valid)\n", p.step);
    p.validation_pending = false;
  }
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
  while (p.step < total && !stopping()) {
    if (p.epoch_pos >= static_cast<long>(train_.size())) {
      ++p.epoch, p.epoch_pos = 0;
      order = epoch_order(train_.size(), train_, s_.seed, p.epoch, B);
    }
    const size_t e = std::min(train_.size(), static_cast<size_t>(p.epoch_pos) + B);
    StepStats st;
    try {
      st = step(order, static_cast<size_t>(p.epoch_pos), e);
    } catch (const Interrupted&) {
      break;
    }
    p.epoch_pos = static_cast<long>(e);
    ++p.step;
    if (!std::isfinite(st.loss.loss)) throw std::runtime_error("loss became non-finite at step " + std::to_string(p.step));
    // tokens/s counts the sequences' tokens (what the data holds), the same with or without sharing
    for (size_t k = e - targets_.size(); k < e; ++k) win_tokens += train_[order[k]].chosen.size() + train_[order[k]].rejected.size();
    win_loss += st.loss.loss, win_pairs += targets_.size(), ++win_steps;
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
      if (sync_) {  // data parallel: the ranks, and the seconds per step spent summing gradients
        rec["ranks"] = comm_.size();
        rec["allreduce_s"] = (sync_->seconds() - win_comm0) / win_steps;
      }
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
      win_comm0 = sync_ ? sync_->seconds() : 0;
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
