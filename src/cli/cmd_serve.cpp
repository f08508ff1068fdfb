// `cairn serve`: the reward model of a run directory as an HTTP service (docs/cli.md#serve). The
// server itself is src/serve/; this file is the command line. Built only when cpp-httplib was found
// at configure time; otherwise the command says so and exits with code 2.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <cxxopts.hpp>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/version.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/interrupt.h"
#include "cli/run_model.h"
#ifdef CAIRN_HAVE_HTTPLIB
#include "cairn/reward.h"
#include "serve/server.h"
#endif

namespace cairn::cli {
namespace {

#ifdef CAIRN_HAVE_HTTPLIB

// The key of --api-key-file: the file's text without surrounding whitespace; it must be non-empty
// and printable ASCII without spaces (it travels in an HTTP header).
std::string read_api_key(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f || std::filesystem::is_directory(path)) throw UsageError("cannot read --api-key-file " + path + ": not a readable file");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string k = ss.str();
  const size_t b = k.find_first_not_of(" \t\r\n"), e = k.find_last_not_of(" \t\r\n");
  k = b == std::string::npos ? "" : k.substr(b, e - b + 1);
  if (k.empty()) throw UsageError("--api-key-file " + path + " is empty");
  for (unsigned char c : k)
    if (c <= ' ' || c >= 127) throw UsageError("--api-key-file " + path + ": the key must be printable ASCII without spaces");
  return k;
}

nlohmann::json model_info(const std::string& dir, const LoadedRun& run, const serve::ServeOptions& o) {
  const ModelConfig& cfg = run.model->config();
  const std::vector<float> w = head_weights(cfg, HeadUse::Scoring);
  nlohmann::json heads = nlohmann::json::array();
  for (int h = 0; h < cfg.n_heads_out; ++h) heads.push_back({{"name", cfg.head_names[h]}, {"weight", w[h]}});
  return {{"model", dir},
          {"version", CAIRN_VERSION},
          {"device", run.backend->name()},
          {"max_seq_len", cfg.max_seq_len},
          {"chat_template", cfg.chat_template},
          {"heads", heads},
          {"tokenizer", {{"kind", run.tokenizer->kind()}, {"vocab_size", run.tokenizer->vocab_size()}}},
          {"limits", {{"max_body_bytes", o.max_body_bytes}, {"max_records", o.limits.max_records},
                      {"max_record_bytes", o.limits.max_record_bytes}}},
          {"batching", {{"token_budget", o.token_budget}, {"max_wait_ms", o.max_wait_s * 1e3}}},
          {"config", config_to_json(cfg)}};
}

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Serve a reward model over HTTP: POST /v1/score, POST /get_reward (OpenRLHF), "
                              "GET /health, GET /v1/model, GET /metrics. SIGINT/SIGTERM finish the requests in "
                              "flight, then exit 0.");
  o.add_options()
    ("model", "run directory", cxxopts::value<std::string>())
    ("host", "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)",
     cxxopts::value<std::string>()->default_value("127.0.0.1"))
    ("port", "TCP port (0: any free port; the one taken is printed)", cxxopts::value<int>()->default_value("8000"))
    ("api-key-file", "require \"Authorization: Bearer KEY\" on every endpoint but /health; KEY is this file's text",
     cxxopts::value<std::string>())
    ("max-body-bytes", "larger request bodies are refused (413)", cxxopts::value<long>()->default_value("16777216"))
    ("max-records", "records (or queries) per request; more: 413", cxxopts::value<long>()->default_value("256"))
    ("max-record-bytes", "rendered text per record; longer: 413", cxxopts::value<long>()->default_value("1048576"))
    ("token-budget", "tokens per forward pass (records of concurrent requests share one)",
     cxxopts::value<long>()->default_value("16384"))
    ("max-wait-ms", "longest a queued record waits for other requests being parsed to join its batch",
     cxxopts::value<double>()->default_value("5"))
    ("http-threads", "connections served at once", cxxopts::value<int>()->default_value("64"))
    ("h,help", "show this help");
  add_backend_options(o);
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help();
    return 0;
  }
  if (!a.count("model")) throw UsageError("--model is required");
  serve::ServeOptions so;
  so.host = a["host"].as<std::string>();
  so.port = a["port"].as<int>();
  if (so.port < 0 || so.port > 65535) throw UsageError("--port must be in [0, 65535]");
  for (const char* k : {"max-body-bytes", "max-records", "max-record-bytes", "token-budget"})
    if (a[k].as<long>() < 1) throw UsageError(std::string("--") + k + " must be ≥ 1");
  so.max_body_bytes = static_cast<size_t>(a["max-body-bytes"].as<long>());
  so.limits.max_records = a["max-records"].as<long>();
  so.limits.max_record_bytes = static_cast<size_t>(a["max-record-bytes"].as<long>());
  so.token_budget = a["token-budget"].as<long>();
  const double wait_ms = a["max-wait-ms"].as<double>();
  if (!(wait_ms >= 0 && wait_ms <= 10000)) throw UsageError("--max-wait-ms must be in [0, 10000]");
  so.max_wait_s = wait_ms / 1e3;
  so.http_threads = a["http-threads"].as<int>();
  if (so.http_threads < 1 || so.http_threads > 4096) throw UsageError("--http-threads must be in [1, 4096]");
  if (a.count("api-key-file")) so.api_key = read_api_key(a["api-key-file"].as<std::string>());
  const BackendOptions bo = backend_options(a);

  const std::string dir = a["model"].as<std::string>();
  set_interrupt_message("cairn serve: interrupted before the server started");
  LoadedRun run = load_run(dir, bo);
  serve::Server server(so, *run.model, *run.tokenizer, model_info(dir, run, so));
  const int port = server.bind();
  const std::atomic<bool>& stop = enter_graceful_interrupts(
      "\ncairn serve: interrupt: finishing the requests in flight, then exiting (again to exit at once)\n",
      "\ncairn serve: second interrupt: exiting now; requests in flight get no answer\n");
  if (so.api_key.empty() && so.host != "127.0.0.1" && so.host != "localhost" && so.host != "::1")
    std::fprintf(stderr, "cairn serve: warning: listening on %s without --api-key-file: anyone who can reach this "
                         "port can use the model\n", so.host.c_str());
  std::fprintf(stderr, "cairn serve: listening on http://%s:%d (model %s, %s, %d head%s, max_seq_len %d)\n",
               so.host.c_str(), port, dir.c_str(), run.backend->name().c_str(), run.model->config().n_heads_out,
               run.model->config().n_heads_out > 1 ? "s" : "", run.model->config().max_seq_len);
  server.serve(stop);
  std::fprintf(stderr, "cairn serve: stopped\n");
  return 0;
}

#else

int run(int argc, char** argv) {
  (void)argc;
  std::fprintf(stderr, "%s: this build has no HTTP server: cpp-httplib was not found when it was configured "
                       "(install libcpp-httplib-dev, as scripts/setup.sh does, and configure again)\n", argv[0]);
  return 2;
}

#endif

CAIRN_COMMAND("serve", "serve a reward model over HTTP (score, OpenRLHF get_reward, health, metrics)", run);

}  // namespace
}  // namespace cairn::cli
