// The HTTP server of `cairn serve`, see server.h.
#include "serve/server.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <httplib.h>
#include <strings.h>
#include <sys/socket.h>

#include "serve/batcher.h"
#include "serve/metrics.h"
#include "util/timing.h"

namespace cairn::serve {
namespace {

using httplib::Request;
using httplib::Response;

const char* const kRoutes[] = {"/v1/score", "/get_reward", "/health", "/v1/model", "/metrics"};

// The metrics label of a path: the route itself, or "other" (arbitrary paths never become labels).
std::string route_label(const std::string& path) {
  for (const char* r : kRoutes)
    if (path == r) return r;
  return "other";
}

// Compares in time that depends only on the lengths, never on where the strings first differ.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() != b.size();
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// What the access log and the metrics learn about the request a worker thread is answering: set
// when its headers are read (pre-routing), filled by the handler, reported by the logger.
struct RequestContext {
  double start = -1;
  RequestRecord rec;
  std::string error;
};
thread_local RequestContext t_ctx;

void set_error(Response& res, int status, const std::string& msg) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", msg}}.dump() + "\n", "application/json");
  t_ctx.error = msg;
}

}  // namespace

struct Server::Impl {
  ServeOptions opt;
  cli::RecordScorer scorer;
  Batcher batcher;
  Metrics metrics;
  std::string model_info;
  std::string expected_auth;
  std::atomic<long> in_flight{0};
  int listen_fd = -1;
  httplib::Server http;

  Impl(const ServeOptions& o, Model& model, const Tokenizer& tok, const nlohmann::json& info)
      : opt(o), scorer(model.config(), tok), batcher(model, o.token_budget, o.max_wait_s),
        model_info(info.dump()), expected_auth(o.api_key.empty() ? "" : "Bearer " + o.api_key) {
    configure();
    routes();
  }

  // "Bearer KEY"; the scheme name is case-insensitive (RFC 7235), the key is not.
  bool authorized(const Request& req) const {
    if (expected_auth.empty()) return true;
    std::string got = req.get_header_value("Authorization");
    if (got.size() >= 7 && strncasecmp(got.c_str(), "bearer ", 7) == 0) got.replace(0, 7, "Bearer ");
    return constant_time_equal(got, expected_auth);
  }

  // A handler with the common frame: authentication, and every failure answered in JSON.
  template <class F>
  httplib::Server::Handler guarded(bool needs_auth, F f) {
    return [this, needs_auth, f](const Request& req, Response& res) {
      try {
        if (needs_auth && !authorized(req)) {
          res.set_header("WWW-Authenticate", "Bearer");
          throw RequestError(401, req.has_header("Authorization") ? "wrong bearer token"
                                                                   : "missing bearer token (Authorization: Bearer KEY)");
        }
        f(req, res);
      } catch (const RequestError& e) {
        set_error(res, e.status(), e.what());
      } catch (const std::exception& e) {
        set_error(res, 500, std::string("internal error: ") + e.what());
      }
    };
  }

  void score(const Request& req, Response& res, bool openrlhf) {
    struct InFlight {
      std::atomic<long>& n;
      explicit InFlight(std::atomic<long>& c) : n(c) { ++n; }
      ~InFlight() { --n; }
    } guard(in_flight);
    Batcher::Arriving arrival(batcher);
    ScoreInput in = openrlhf ? parse_get_reward_request(req.body, scorer, opt.limits)
                             : parse_score_request(req.body, scorer, opt.limits);
    t_ctx.rec.records = static_cast<long>(in.seqs.size());
    ScoreJob job;
    job.seqs = std::move(in.seqs);
    batcher.score(job, &arrival);
    t_ctx.rec.tokens = job.tokens;
    t_ctx.rec.queue_s = job.queue_s, t_ctx.rec.compute_s = job.compute_s;
    t_ctx.rec.scored = !job.seqs.empty();
    res.set_content(openrlhf ? get_reward_response(job, scorer) : score_response(job, in.truncated, scorer),
                    "application/json");
  }

  void routes() {
    http.Post("/v1/score", guarded(true, [this](const Request& q, Response& r) { score(q, r, false); }));
    http.Post("/get_reward", guarded(true, [this](const Request& q, Response& r) { score(q, r, true); }));
    http.Get("/health", guarded(false, [](const Request&, Response& r) {
      r.set_content("{\"status\":\"ok\"}\n", "application/json");
    }));
    http.Get("/v1/model", guarded(true, [this](const Request&, Response& r) {
      r.set_content(model_info + "\n", "application/json");
    }));
    http.Get("/metrics", guarded(true, [this](const Request&, Response& r) {
      const BatcherStats s = batcher.stats();
      metrics.set_gauges(in_flight.load(), static_cast<long>(batcher.queued_sequences()), s.batches, s.tokens, s.forward_s);
      r.set_content(metrics.prometheus(), "text/plain; version=0.0.4");
    }));
  }

  void configure() {
    const int threads = opt.http_threads;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_keep_alive_max_count(1000);
    http.set_keep_alive_timeout(2);  // also bounds how long an idle connection delays a drain
    http.set_read_timeout(5);  // a client that stops sending holds a worker at most this long
    http.set_write_timeout(5);
    http.set_tcp_nodelay(true);
    // httplib listens with a backlog of 5: 64 clients connecting at once overflow it and wait for
    // SYN retransmits (1 s, 3 s). The listening socket is remembered here and its backlog raised
    // once bound (listen() on a listening socket only changes the backlog).
    http.set_socket_options([this](socket_t fd) {
      int yes = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_fd = fd;
    });
    http.set_pre_routing_handler([this](const Request& req, Response& res) {
      t_ctx = RequestContext{};
      t_ctx.start = now_seconds();
      t_ctx.rec.endpoint = route_label(req.path);
      // httplib (0.11) checks --max-body-bytes against Content-Length only: a chunked body, or a
      // body-carrying request without a length (read until the client closes), would be read whole
      // whatever its size. Such requests are refused before any of the body is read. (httplib 0.11
      // cannot close the connection from here: bytes of the unread body that follow are read as the
      // next request, which authentication and the limits still apply to; docs/cli.md#serve.)
      const bool chunked = req.has_header("Transfer-Encoding");
      const bool body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                               req.method == "DELETE" || req.method == "PRI";
      if (chunked || (body_method && !req.has_header("Content-Length"))) {
        set_error(res, 411, std::string(chunked ? "Transfer-Encoding is not accepted" : "no Content-Length") +
                                ": send the body with a Content-Length of at most " + std::to_string(opt.max_body_bytes) +
                                " bytes (--max-body-bytes)");
        return httplib::Server::HandlerResponse::Handled;
      }
      // httplib reads a Content-Length with strtoull: "-1" would become 2^64 - 1 (a 413 that blames
      // the size), "12abc" 12; a second Content-Length would be ignored. Refused as malformed.
      if (req.has_header("Content-Length")) {
        const std::string len = req.get_header_value("Content-Length");
        const bool digits = !len.empty() && len.size() <= 19 &&
                            std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits || req.get_header_value_count("Content-Length") != 1) {
          set_error(res, 400, digits ? "more than one Content-Length" : "malformed Content-Length \"" + len.substr(0, 40) +
                                                                            "\": expected a number of bytes");
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Failures httplib answers itself (unknown path, body too large, unreadable request) get a
    // JSON body in plain words too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 404 && route_label(req.path) != "other") {
        const bool post = req.path == "/v1/score" || req.path == "/get_reward";
        set_error(res, 405, "method " + req.method + " not allowed on " + req.path + " (use " + (post ? "POST" : "GET") + ")");
      } else if (res.status == 404) {
        set_error(res, 404, "no such endpoint: " + req.method + " " + req.path +
                                " (POST /v1/score, POST /get_reward, GET /health, GET /v1/model, GET /metrics)");
      } else if (res.status == 413) {
        set_error(res, 413, "request body over the limit of " + std::to_string(opt.max_body_bytes) +
                                " bytes (--max-body-bytes)");
      } else {
        set_error(res, res.status, "malformed HTTP request");
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const Request&, Response& res, std::exception_ptr) {
      set_error(res, 500, "internal error");
    });
    http.set_logger([this](const Request& req, const Response& res) { log(req, res); });
  }

  // One access-log line on stderr per request, and the metrics.
  void log(const Request& req, const Response& res) {
    RequestRecord& r = t_ctx.rec;
    if (r.endpoint.empty()) r.endpoint = route_label(req.path);
    r.status = res.status;
    r.seconds = t_ctx.start < 0 ? 0 : now_seconds() - t_ctx.start;
    metrics.observe(r);
    std::string err;
    if (!t_ctx.error.empty()) err = " error=" + nlohmann::json(t_ctx.error).dump();
    std::fprintf(stderr, "cairn serve: %s \"%s %s\" %d records=%ld tokens=%ld queue_ms=%.2f compute_ms=%.2f total_ms=%.2f%s\n",
                 req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status, r.records, r.tokens,
                 1e3 * r.queue_s, 1e3 * r.compute_s, 1e3 * r.seconds, err.c_str());
    t_ctx = RequestContext{};
  }
};

Server::Server(const ServeOptions& opt, Model& model, const Tokenizer& tok, nlohmann::json model_info)
    : impl_(std::make_unique<Impl>(opt, model, tok, model_info)) {}

Server::~Server() = default;

int Server::bind() {
  httplib::Server& h = impl_->http;
  const std::string& host = impl_->opt.host;
  const int port = impl_->opt.port;
  const int got = port == 0 ? h.bind_to_any_port(host) : (h.bind_to_port(host, port) ? port : -1);
  if (got < 0)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) +
                             " (address in use, not an address of this machine, or a port below 1024 without privileges)");
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, 1024);
  return got;
}

void Server::serve(const std::atomic<bool>& stop) {
  httplib::Server& h = impl_->http;
  std::atomic<bool> returned{false};
  std::thread listener([&] {
    h.listen_after_bind();
    returned = true;
  });
  while (!stop.load() && !returned.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!returned.load())
    std::fprintf(stderr, "cairn serve: stopping: no new connections; finishing the %ld scoring requests in flight\n",
                 impl_->in_flight.load());
  // stop() only acts once the listener runs; repeat until it has returned (it joins the workers, so
  // every request in flight has been answered by then).
  while (!returned.load()) {
    h.stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  listener.join();
  impl_->batcher.stop();
  if (!stop.load()) throw std::runtime_error("the HTTP server stopped unexpectedly");
}

}  // namespace cairn::serve
