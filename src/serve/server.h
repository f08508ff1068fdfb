// The HTTP side of `cairn serve` (docs/cli.md#serve): routes, bearer-token auth, limits, the access
// log and metrics. Worker threads parse, validate and tokenize; one Batcher owns the model.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cairn/model.h"
#include "cairn/tokenizer.h"
#include "serve/requests.h"

namespace cairn::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                        // 0: any free port
  std::string api_key;                    // empty: no authentication
  size_t max_body_bytes = 16u << 20;      // larger bodies: 413
  RequestLimits limits;
  int http_threads = 64;                  // connections served at once
  long token_budget = 16384;              // tokens per forward pass
  double max_wait_s = 0.005;              // longest a queued record waits for company
};

class Server {
 public:
  // model_info: the body of GET /v1/model.
  Server(const ServeOptions& opt, Model& model, const Tokenizer& tok, nlohmann::json model_info);
  ~Server();
  // Binds the listening socket; returns the port (std::runtime_error when the address cannot be bound).
  int bind();
  // Serves until *stop is set (polled every 20 ms), then stops accepting, lets every request in
  // flight finish, and returns.
  void serve(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::serve
