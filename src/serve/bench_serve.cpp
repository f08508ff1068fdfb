// `cairn bench serve`: a bounded loopback load generator for `cairn serve` (docs/cli.md#bench-serve).
// Measures, on one model in one run: `cairn score`'s offline records/s; the time of one forward pass
// over a request's records (in process, before the server starts); then, against a `cairn serve`
// child on a loopback port, records/s and p50/p99 latency at each concurrency with 1–8 records per
// request, every reward checked against `cairn score`'s; a phase with a flood of malformed requests
// beside well-formed ones; the server's peak memory. One JSON object on stdout.
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <cxxopts.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cairn/errors.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/run_model.h"
#include "cli/scoring.h"
#include "serve/child.h"
#include "util/rng.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

using nlohmann::json;

// A pool of distinct scoring records of varied lengths (both record forms).
std::vector<json> make_pool(int n, uint64_t seed) {
  const char* words[] = {"the", "answer", "is", "careful", "thank", "you", "for", "asking", "here", "a", "poem",
                         "about", "weather", "recipe", "please", "note", "that", "whatever", "train", "times"};
  Rng r(seed);
  std::vector<json> v;
  for (int i = 0; i < n; ++i) {
    auto text = [&](int len) {
      std::string s;
      for (int k = 0; k < len; ++k) s += std::string(k ? " " : "") + words[r.below(20)];
      return s;
    };
    const std::string prompt = "Question " + std::to_string(i) + ": " + text(3 + static_cast<int>(r.below(10)));
    const std::string resp = text(4 + static_cast<int>(r.below(40)));
    if (i % 4 == 0) v.push_back({{"text", "\n\nHuman: " + prompt + "\n\nAssistant: " + resp}});
    else v.push_back({{"prompt", prompt}, {"response", resp}});
  }
  return v;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

struct Phase {
  long requests = 0, records = 0, failures = 0, mismatches = 0;
  double seconds = 0;
  std::vector<double> latency_ms;
  json to_json(int concurrency) const {
    return {{"concurrency", concurrency}, {"requests", requests}, {"records", records}, {"seconds", seconds},
            {"records_per_s", records / std::max(1e-9, seconds)}, {"p50_ms", quantile(latency_ms, 0.5)},
            {"p99_ms", quantile(latency_ms, 0.99)}, {"failed_requests", failures}, {"reward_mismatches", mismatches}};
  }
};

struct Load {
  int port;
  const std::vector<json>& pool;
  const std::vector<std::string>& want;  // cairn score's printed reward per pool record
  long max_requests;
  double max_seconds;
};

// `clients` threads send well-formed /v1/score requests of 1–8 records until max_requests are sent
// in all or max_seconds pass; every reward is compared with cairn score's.
Phase run_phase(const Load& L, int clients, uint64_t seed) {
  Phase p;
  std::mutex m;
  std::atomic<long> issued{0};
  const double t0 = now_seconds();
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c)
    ts.emplace_back([&, c] {
      httplib::Client http("127.0.0.1", L.port);
      http.set_read_timeout(60);
      Rng r(seed * 1000 + static_cast<uint64_t>(c));
      Phase mine;
      while (issued.fetch_add(1) < L.max_requests && now_seconds() - t0 < L.max_seconds) {
        std::vector<size_t> pick(1 + r.below(8));
        json recs = json::array();
        for (auto& i : pick) recs.push_back(L.pool[i = r.below(L.pool.size())]);
        const std::string body = json{{"records", recs}}.dump();
        const double s = now_seconds();
        auto res = http.Post("/v1/score", body, "application/json");
        mine.latency_ms.push_back(1e3 * (now_seconds() - s));
        ++mine.requests;
        if (!res || res->status != 200) {
          ++mine.failures;
          continue;
        }
        const json j = json::parse(res->body);
        for (size_t k = 0; k < pick.size(); ++k) mine.mismatches += j["rewards"][k].dump() != L.want[pick[k]];
        mine.records += static_cast<long>(pick.size());
      }
      std::lock_guard<std::mutex> lock(m);
      p.requests += mine.requests, p.records += mine.records, p.failures += mine.failures;
      p.mismatches += mine.mismatches;
      p.latency_ms.insert(p.latency_ms.end(), mine.latency_ms.begin(), mine.latency_ms.end());
    });
  for (auto& t : ts) t.join();
  p.seconds = now_seconds() - t0;
  return p;
}

// Malformed requests, bounded: bad JSON, missing fields, a bad record, an oversize body, a wrong path.
void flood(int port, long max_requests, const std::atomic<bool>& stop, std::map<int, long>* statuses, std::mutex* m) {
  httplib::Client http("127.0.0.1", port);
  const std::string big(100000, 'x');
  const std::vector<std::pair<const char*, std::string>> bad = {
      {"/v1/score", "{\"records\": ["}, {"/v1/score", "{}"}, {"/v1/score", R"({"records": [{"prompt": "p"}]})"},
      {"/v1/score", "{\"records\": [{\"text\": \"" + big + "\"}]}"}, {"/get_reward", R"({"query": [1]})"},
      {"/nowhere", "{}"}};
  for (long i = 0; i < max_requests && !stop.load(); ++i) {
    const auto& [path, body] = bad[static_cast<size_t>(i) % bad.size()];
    auto res = http.Post(path, body, "application/json");
    std::lock_guard<std::mutex> lock(*m);
    ++(*statuses)[res ? res->status : 0];
  }
}

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Load-test `cairn serve` on loopback against `cairn score` on the same model (JSON on stdout).");
  o.add_options()
    ("model", "run directory", cxxopts::value<std::string>())
    ("concurrency", "client counts, one phase each", cxxopts::value<std::vector<int>>()->default_value("1,8,64"))
    ("requests", "requests per phase at most", cxxopts::value<long>()->default_value("2000"))
    ("seconds", "seconds per phase at most", cxxopts::value<double>()->default_value("20"))
    ("offline-records", "records `cairn score` scores for the offline baseline", cxxopts::value<long>()->default_value("4000"))
    ("flood-requests", "malformed requests in the flood phase (0: no flood phase)", cxxopts::value<long>()->default_value("2000"))
    ("serve-args", "extra flags for `cairn serve` (space-separated)", cxxopts::value<std::string>()->default_value(""))
    ("threads", "CPU threads of the model, for score and serve alike (0: all cores)", cxxopts::value<int>()->default_value("0"))
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help();
    return 0;
  }
  if (!a.count("model")) throw UsageError("--model is required");
  const std::string model = a["model"].as<std::string>(), threads = std::to_string(a["threads"].as<int>());
  const long max_req = a["requests"].as<long>(), n_off = a["offline-records"].as<long>();
  const double max_s = a["seconds"].as<double>();
  if (max_req < 1 || n_off < 1 || !(max_s > 0) || max_s > 600) throw UsageError("--requests, --offline-records ≥ 1; --seconds in (0, 600]");
  for (int c : a["concurrency"].as<std::vector<int>>())
    if (c < 1 || c > 256) throw UsageError("--concurrency values must be in [1, 256]");
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto tmp = std::filesystem::temp_directory_path() / ("cairn-bench-serve-" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);
  struct Cleanup {
    std::filesystem::path p;
    ~Cleanup() { std::error_code ec; std::filesystem::remove_all(p, ec); }
  } cleanup{tmp};

  // 1. Offline: cairn score on n_off records drawn from the pool; its rewards are the reference.
  const std::vector<json> pool = make_pool(512, 7);
  {
    std::ofstream f(tmp / "in.jsonl");
    for (long i = 0; i < n_off; ++i) f << pool[static_cast<size_t>(i) % pool.size()].dump() << "\n";
  }
  const std::string score_cmd = self + " score --model '" + model + "' --threads " + threads + " --input " +
                                (tmp / "in.jsonl").string() + " --output " + (tmp / "out.jsonl").string() + " 2>&1";
  const double ts0 = now_seconds();
  FILE* p = popen(score_cmd.c_str(), "r");
  std::string score_log;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) score_log.append(buf, n);
  if (pclose(p) != 0) throw std::runtime_error("cairn score failed:\n" + score_log);
  const double score_wall = now_seconds() - ts0;
  const size_t at = score_log.find(" records/s");
  const size_t from = score_log.rfind(' ', at - 1) + 1;
  const double offline_rps = std::stod(score_log.substr(from, at - from));
  std::vector<std::string> want(pool.size());
  {
    std::ifstream f(tmp / "out.jsonl");
    std::string line;
    for (size_t i = 0; i < pool.size() && std::getline(f, line); ++i) want[i] = json::parse(line)["reward"].dump();
  }

  // 2. One forward pass over a request's records (1–8, as the load sends), in this process.
  std::vector<double> fwd_ms;
  {
    BackendOptions bo;
    bo.threads = a["threads"].as<int>();
    LoadedRun run = load_run(model, bo);
    const RecordScorer scorer(run.model->config(), *run.tokenizer);
    Rng r(99);
    std::vector<float> out;
    for (int i = 0; i < 300; ++i) {
      TokenBatch b;
      b.clear();
      for (uint64_t k = 0, n = 1 + r.below(8); k < n; ++k) {
        bool cut = false;
        b.add(scorer.tokenize(scorer.render(pool[r.below(pool.size())], "pool", 0), &cut));
      }
      const double s = now_seconds();
      run.model->forward(b, out, false);
      if (i >= 20) fwd_ms.push_back(1e3 * (now_seconds() - s));
    }
  }

  // 3. The server, and one phase per concurrency.
  std::vector<std::string> sargs = {"--model", model, "--threads", threads, "--max-body-bytes", "65536"};
  std::istringstream extra(a["serve-args"].as<std::string>());
  for (std::string w; extra >> w;) sargs.push_back(w);
  serve::ServerProcess srv(self, sargs, (tmp / "serve.log").string());
  const Load L{srv.port(), pool, want, max_req, max_s};
  json phases = json::array();
  for (int c : a["concurrency"].as<std::vector<int>>()) {
    const Phase ph = run_phase(L, c, static_cast<uint64_t>(c));
    phases.push_back(ph.to_json(c));
    std::fprintf(stderr, "bench serve: concurrency %3d: %8.1f records/s  p50 %7.2f ms  p99 %7.2f ms  (%ld requests, %ld failed, %ld mismatches)\n",
                 c, ph.records / std::max(1e-9, ph.seconds), quantile(ph.latency_ms, 0.5), quantile(ph.latency_ms, 0.99),
                 ph.requests, ph.failures, ph.mismatches);
  }

  // 4. The same load at concurrency 8 beside a bounded flood of malformed requests (2 clients).
  json flood_json = nullptr;
  if (const long nf = a["flood-requests"].as<long>(); nf > 0) {
    const Phase quiet = run_phase(L, 8, 501);
    std::map<int, long> statuses;
    std::mutex m;
    std::atomic<bool> stop{false};
    std::vector<std::thread> fl;
    for (int i = 0; i < 2; ++i) fl.emplace_back([&] { flood(srv.port(), nf / 2, stop, &statuses, &m); });
    const Phase loud = run_phase(L, 8, 501);
    stop = true;
    for (auto& t : fl) t.join();
    json st = json::object();
    long total = 0;
    for (auto [s, n] : statuses) st[std::to_string(s)] = n, total += n;
    flood_json = {{"malformed_requests", total}, {"statuses", st}, {"without_flood", quiet.to_json(8)},
                  {"with_flood", loud.to_json(8)},
                  {"throughput_ratio", (loud.records / std::max(1e-9, loud.seconds)) / std::max(1e-9, quiet.records / std::max(1e-9, quiet.seconds))}};
    std::fprintf(stderr, "bench serve: flood of %ld malformed requests: well-formed %.1f → %.1f records/s, %ld mismatches\n",
                 total, quiet.records / quiet.seconds, loud.records / loud.seconds, loud.mismatches);
  }
  const double peak = srv.peak_rss_mib();
  srv.signal(SIGTERM);
  const int exit_code = srv.wait_exit(30);

  json out = {{"bench", "serve"}, {"model", model}, {"threads", a["threads"].as<int>()},
              {"records_per_request", "uniform 1-8"},
              {"offline", {{"records", n_off}, {"records_per_s", offline_rps}, {"wall_s", score_wall}}},
              {"single_forward_ms_p50", quantile(fwd_ms, 0.5)}, {"phases", phases}, {"flood", flood_json},
              {"server_peak_rss_mib", peak}, {"server_exit_code", exit_code}};
  for (auto& ph : out["phases"]) {
    ph["fraction_of_offline"] = ph["records_per_s"].get<double>() / offline_rps;
    ph["p50_minus_forward_ms"] = ph["p50_ms"].get<double>() - out["single_forward_ms_p50"].get<double>();
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}

CAIRN_COMMAND("bench serve", "load-test cairn serve on loopback against cairn score (JSON)", run);

}  // namespace
}  // namespace cairn::cli
