// Counters and latency quantiles of `cairn serve`, rendered in the Prometheus text format for
// GET /metrics. Thread-safe. Quantiles are over the last kWindow requests of each endpoint.
#pragma once
#include <array>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace cairn::serve {

// What one request did, filled in by its handler and reported once it is answered.
struct RequestRecord {
  std::string endpoint;  // a known route ("/v1/score", ...) or "other"
  int status = 0;
  long records = 0, tokens = 0;
  double seconds = 0, queue_s = 0, compute_s = 0;
  bool scored = false;  // reached the model (queue_s and compute_s are meaningful)
};

class Metrics {
 public:
  static constexpr size_t kWindow = 4096;
  struct Window {  // a ring of the latest values, plus the all-time sum and count
    std::vector<double> ring;
    size_t next = 0;
    double sum = 0;
    long count = 0;
    void add(double v);
    double quantile(double q) const;
  };

  void observe(const RequestRecord& r);
  void set_gauges(long in_flight, long queued_sequences, long batches, long batch_tokens, double forward_s);
  std::string prometheus();

 private:
  std::mutex m_;
  std::map<std::pair<std::string, int>, long> requests_;  // (endpoint, status) → count
  std::map<std::string, Window> latency_;                 // endpoint → request seconds
  Window queue_, compute_;
  long records_ = 0, tokens_ = 0;
  long in_flight_ = 0, queued_ = 0, batches_ = 0, batch_tokens_ = 0;
  double forward_s_ = 0;
};

}  // namespace cairn::serve
