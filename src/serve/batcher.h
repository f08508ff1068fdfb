// Dynamic batching for `cairn serve`. The model and its backend are not thread-safe, so ONE batcher
// thread owns them. HTTP worker threads hand in a request's token sequences and block until they are
// scored; the batcher packs queued sequences (from any number of requests, in arrival order) into
// one batch of at most token_budget tokens, runs one forward pass and hands each row back. Packing
// has no padding, and on the CPU a sequence's reward does not depend on its neighbours
// (docs/model.md#numerics-and-determinism), so what a request gets never depends on what it was
// batched with.
//
// When the queue holds fewer than token_budget tokens and other requests are still being parsed,
// the batcher waits for them, at most max_wait after the oldest queued sequence arrived; when
// nothing else is on its way it runs at once (no added latency for a lone client).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cairn/model.h"

namespace cairn::serve {

// One request's sequences and, once score() returns, their results.
struct ScoreJob {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<float> rewards;  // seqs.size() × n_heads_out, row-major
  long tokens = 0;
  double queue_s = 0;    // enqueue → the start of the first forward pass that held one of its sequences
  double compute_s = 0;  // that start → the end of the last one
  std::string error;     // set when a forward pass failed (the rewards are then meaningless)

 private:
  friend class Batcher;
  size_t remaining = 0;
  double enqueued = 0, first_start = -1, last_end = 0;
};

struct BatcherStats {
  long batches = 0, sequences = 0, tokens = 0;
  double forward_s = 0;
};

class Batcher {
 public:
  Batcher(Model& model, long token_budget, double max_wait_s);
  ~Batcher();  // stop()
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  class Arriving;
  // Scores every sequence of job; blocks until done. Thread-safe. Ends `arrival` (when given) in
  // the same step as it queues the sequences.
  void score(ScoreJob& job, Arriving* arrival = nullptr);

  // While an Arriving is alive, a request is being parsed and will probably call score() soon:
  // the batcher may wait for it (at most max_wait).
  class Arriving {
   public:
    explicit Arriving(Batcher& b);
    ~Arriving() { done(); }
    void done();

   private:
    friend class Batcher;
    Batcher& b_;
    bool live_ = true;
  };

  // Scores what is queued, then stops the thread. Calling score() afterwards is an error.
  void stop();
  BatcherStats stats() const;
  size_t queued_sequences() const;

 private:
  struct Item {
    ScoreJob* job;
    size_t index;
  };
  void loop();
  size_t take_batch(std::vector<Item>& items, TokenBatch& batch);

  Model& model_;
  const long budget_;
  const double max_wait_s_;
  mutable std::mutex m_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Item> queue_;
  long queued_tokens_ = 0;
  int arriving_ = 0;
  bool stopping_ = false;
  BatcherStats stats_;
  std::thread thread_;
};

}  // namespace cairn::serve
