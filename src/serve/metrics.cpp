// Prometheus metrics, see metrics.h.
#include "serve/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace cairn::serve {

void Metrics::Window::add(double v) {
  if (ring.size() < kWindow) ring.push_back(v);
  else ring[next] = v;
  next = (next + 1) % kWindow;
  sum += v;
  ++count;
}

// Nearest rank over the window (NaN when empty: Prometheus' convention for a summary without data).
double Metrics::Window::quantile(double q) const {
  if (ring.empty()) return std::nan("");
  std::vector<double> v = ring;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - (q > 0 ? 1 : 0));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

void Metrics::observe(const RequestRecord& r) {
  std::lock_guard<std::mutex> lock(m_);
  ++requests_[{r.endpoint, r.status}];
  latency_[r.endpoint].add(r.seconds);
  if (r.status == 200) records_ += r.records, tokens_ += r.tokens;
  if (r.scored) queue_.add(r.queue_s), compute_.add(r.compute_s);
}

void Metrics::set_gauges(long in_flight, long queued_sequences, long batches, long batch_tokens, double forward_s) {
  std::lock_guard<std::mutex> lock(m_);
  in_flight_ = in_flight, queued_ = queued_sequences, batches_ = batches, batch_tokens_ = batch_tokens;
  forward_s_ = forward_s;
}

namespace {

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  char b[40];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

void summary(std::string& out, const std::string& name, const std::string& labels, const Metrics::Window& w) {
  const std::string sep = labels.empty() ? "" : ",";
  for (double q : {0.5, 0.9, 0.99})
    out += name + "{" + labels + sep + "quantile=\"" + num(q) + "\"} " + num(w.quantile(q)) + "\n";
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + l + " " + num(w.sum) + "\n" + name + "_count" + l + " " + std::to_string(w.count) + "\n";
}

}  // namespace

std::string Metrics::prometheus() {
  std::lock_guard<std::mutex> lock(m_);
  std::string o;
  o += "# HELP cairn_requests_total HTTP requests answered, by endpoint and status code.\n"
       "# TYPE cairn_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    o += "cairn_requests_total{endpoint=\"" + k.first + "\",code=\"" + std::to_string(k.second) + "\"} " +
         std::to_string(n) + "\n";
  o += "# HELP cairn_request_duration_seconds Time from the request's headers to its answer (quantiles over the last " +
       std::to_string(kWindow) + " requests).\n# TYPE cairn_request_duration_seconds summary\n";
  for (const auto& [ep, w] : latency_) summary(o, "cairn_request_duration_seconds", "endpoint=\"" + ep + "\"", w);
  o += "# HELP cairn_queue_wait_seconds Time a scoring request waited for its first forward pass.\n"
       "# TYPE cairn_queue_wait_seconds summary\n";
  summary(o, "cairn_queue_wait_seconds", "", queue_);
  o += "# HELP cairn_compute_seconds Time from a scoring request's first forward pass to the end of its last.\n"
       "# TYPE cairn_compute_seconds summary\n";
  summary(o, "cairn_compute_seconds", "", compute_);
  auto scalar = [&](const char* name, const char* type, const char* help, const std::string& v) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + v + "\n";
  };
  scalar("cairn_records_total", "counter", "Records scored in successful requests.", std::to_string(records_));
  scalar("cairn_tokens_total", "counter", "Tokens scored in successful requests.", std::to_string(tokens_));
  scalar("cairn_batches_total", "counter", "Forward passes run by the batcher.", std::to_string(batches_));
  scalar("cairn_batch_tokens_total", "counter", "Tokens over all forward passes.", std::to_string(batch_tokens_));
  scalar("cairn_forward_seconds_total", "counter", "Time spent in forward passes.", num(forward_s_));
  scalar("cairn_requests_in_flight", "gauge", "Scoring requests being parsed, queued or scored.", std::to_string(in_flight_));
  scalar("cairn_queued_sequences", "gauge", "Sequences waiting for a forward pass.", std::to_string(queued_));
  return o;
}

}  // namespace cairn::serve
