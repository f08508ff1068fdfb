// The batcher thread, see batcher.h.
#include "serve/batcher.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "util/timing.h"

namespace cairn::serve {

Batcher::Batcher(Model& model, long token_budget, double max_wait_s)
    : model_(model), budget_(token_budget), max_wait_s_(max_wait_s), thread_([this] { loop(); }) {}

Batcher::~Batcher() { stop(); }

Batcher::Arriving::Arriving(Batcher& b) : b_(b) {
  std::lock_guard<std::mutex> lock(b_.m_);
  ++b_.arriving_;
}

void Batcher::Arriving::done() {
  if (!live_) return;
  live_ = false;
  {
    std::lock_guard<std::mutex> lock(b_.m_);
    --b_.arriving_;
  }
  b_.work_cv_.notify_one();  // the batcher may be waiting for this request
}

void Batcher::score(ScoreJob& job, Arriving* arrival) {
  job.rewards.assign(job.seqs.size() * static_cast<size_t>(model_.config().n_heads_out), 0.0f);
  job.tokens = 0;
  for (const auto& s : job.seqs) job.tokens += static_cast<long>(s.size());
  if (job.seqs.empty()) {
    if (arrival) arrival->done();
    return;
  }
  std::unique_lock<std::mutex> lock(m_);
  if (stopping_) throw std::logic_error("Batcher::score after stop");
  if (arrival && arrival->live_) {
    arrival->live_ = false;
    --arriving_;
  }
  job.remaining = job.seqs.size();
  job.enqueued = now_seconds();
  for (size_t i = 0; i < job.seqs.size(); ++i) queue_.push_back({&job, i});
  queued_tokens_ += job.tokens;
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return job.remaining == 0; });
  job.queue_s = job.first_start - job.enqueued;
  job.compute_s = job.last_end - job.first_start;
}

// Moves queued sequences, oldest first, into batch while they fit the budget (at least one: a
// sequence longer than the budget runs alone). Called with m_ held.
size_t Batcher::take_batch(std::vector<Item>& items, TokenBatch& batch) {
  items.clear();
  batch.clear();
  long tokens = 0;
  while (!queue_.empty()) {
    const Item it = queue_.front();
    const long n = static_cast<long>(it.job->seqs[it.index].size());
    if (!items.empty() && tokens + n > budget_) break;
    queue_.pop_front();
    batch.add(it.job->seqs[it.index]);
    items.push_back(it);
    tokens += n;
  }
  queued_tokens_ -= tokens;
  return static_cast<size_t>(tokens);
}

void Batcher::loop() {
  const int H = model_.config().n_heads_out;
  std::vector<Item> items;
  TokenBatch batch;
  std::vector<float> rewards;
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    const double oldest = queue_.front().job->enqueued;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(std::max(0.0, oldest + max_wait_s_ - now_seconds()));
    while (!stopping_ && arriving_ > 0 && queued_tokens_ < budget_)
      if (work_cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    const size_t tokens = take_batch(items, batch);
    lock.unlock();
    std::string error;
    const double t0 = now_seconds();
    try {
      model_.forward(batch, rewards, false);
    } catch (const std::exception& e) {
      error = std::string("the forward pass failed: ") + e.what();
    }
    const double t1 = now_seconds();
    lock.lock();
    for (size_t k = 0; k < items.size(); ++k) {
      ScoreJob& job = *items[k].job;
      if (error.empty())
        std::copy(rewards.begin() + static_cast<long>(k) * H, rewards.begin() + static_cast<long>(k + 1) * H,
                  job.rewards.begin() + static_cast<long>(items[k].index) * H);
      else if (job.error.empty())
        job.error = error;
      if (job.first_start < 0) job.first_start = t0;
      job.last_end = t1;
      --job.remaining;
    }
    ++stats_.batches;
    stats_.sequences += static_cast<long>(items.size());
    stats_.tokens += static_cast<long>(tokens);
    stats_.forward_s += t1 - t0;
    done_cv_.notify_all();
  }
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(m_);
  return stats_;
}

size_t Batcher::queued_sequences() const {
  std::lock_guard<std::mutex> lock(m_);
  return queue_.size();
}

}  // namespace cairn::serve
