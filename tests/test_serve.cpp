// `cairn serve` end to end: a real server process on an ephemeral loopback port, real HTTP clients
// (httplib::Client, raw sockets for what a client library will not send). Rewards from /v1/score and
// /get_reward must print exactly as `cairn score` prints them for the same records, under 32
// concurrent clients sending overlapping records; every malformed request gets its status and
// message and the server keeps serving; auth on and off; SIGTERM drains a request in flight, then
// exit 0.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "serve/child.h"
#include "test_paths.h"
#include "test_tmpdir.h"
#include "util/rng.h"

namespace cairn {
namespace {

using nlohmann::json;
using serve::ServerProcess;

std::string cli(const std::string& args, int* code) {
  return test::run_capture(std::string(CAIRN_BINARY) + " " + args + " 2>&1", code);
}

// Two tiny runs, trained once for the suite: one head, and three (a constitution + a length head).
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    std::string pairs;
    const char* topics[] = {"the weather", "a recipe", "my homework", "a poem"};
    for (int i = 0; i < 120; ++i) {
      const std::string t = topics[i % 4];
      json p = {{"prompt", "Tell me about " + t + " " + std::to_string(i)},
                {"chosen", "Thank you for asking, here is a careful answer about " + t + "."},
                {"rejected", "Whatever, read about " + t + "."}};
      if (i % 3) p["principle"] = i % 3 == 1 ? "helpful" : "harmless";
      pairs += p.dump() + "\n";
    }
    const std::string train = dir_->write("pairs.jsonl", pairs);
    const std::string cons = dir_->write("constitution.json", R"({"principles": [
        {"name": "helpful", "text": "Choose the more helpful answer.", "weight": 0.6},
        {"name": "harmless", "text": "Choose the less harmful answer.", "weight": 0.4}]})");
    const std::string common = " --train " + train + " --vocab-size 300 --preset tiny --d-model 32 --n-layers 1"
                               " --d-ff 64 --max-seq-len 128 --steps 4 --batch-pairs 8 --threads 2";
    int code = 0;
    std::string out = cli("train --out " + dir_->file("run") + common, &code);
    ASSERT_EQ(code, 0) << out;
    out = cli("train --out " + dir_->file("run3") + common + " --constitution " + cons + " --length-head", &code);
    ASSERT_EQ(code, 0) << out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string run1() { return dir_->file("run"); }
  static std::string run3() { return dir_->file("run3"); }
  static std::string log(const std::string& name) { return dir_->file(name + ".log"); }
  static std::unique_ptr<ServerProcess> start(const std::string& run, const std::string& name,
                                              std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model", run, "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<ServerProcess>(CAIRN_BINARY, args, log(name));
  }
  static test::TempDir* dir_;
};
test::TempDir* Serve::dir_ = nullptr;

// Scoring records of every form (text, text prompt, transcript prompt, messages, implicit
// transcript), short and long (one is truncated at max_seq_len 128), ASCII and not.
std::vector<json> record_pool() {
  std::vector<json> v;
  for (int i = 0; i < 6; ++i) {
    const std::string n = std::to_string(i);
    v.push_back({{"text", "Thank you for asking " + n + "."}});
    v.push_back({{"prompt", "Tell me about a poem " + n}, {"response", "Whatever " + n + "."}});
    v.push_back({{"prompt", "\n\nHuman: Tell me about the weather " + n + "\n\nAssistant:"}, {"response", " Sunny."}});
    v.push_back({{"prompt", json::array({{{"role", "user"}, {"content", "hi " + n}}})},
                 {"response", json::array({{{"role", "assistant"}, {"content", "héllo wörld " + n}}})}});
    v.push_back({{"response", "\n\nHuman: what?\n\nAssistant: a careful answer " + n}});
  }
  std::string long_text;
  for (int i = 0; i < 80; ++i) long_text += "word" + std::to_string(i) + " ";
  v.push_back({{"text", long_text}});
  return v;
}

// What `cairn score` prints for each record of pool: the "reward" value's text, and the per-head
// values' texts (multi-head runs).
struct Expected {
  std::vector<std::string> reward;
  std::vector<std::map<std::string, std::string>> heads;
};
Expected offline_scores(const std::string& run, const std::vector<json>& pool, const test::TempDir& d) {
  std::string in;
  for (const auto& r : pool) in += r.dump() + "\n";
  int code = 0;
  const std::string out =
      cli("score --model " + run + " --threads 1 --batch-size 3 --input " + d.write("in.jsonl", in) + " --output " +
              d.file("out.jsonl"),
          &code);
  EXPECT_EQ(code, 0) << out;
  Expected e;
  std::ifstream f(d.file("out.jsonl"));
  for (std::string line; std::getline(f, line);) {
    const json j = json::parse(line);
    e.reward.push_back(j["reward"].dump());
    std::map<std::string, std::string> h;
    if (j.contains("rewards"))
      for (auto it = j["rewards"].begin(); it != j["rewards"].end(); ++it) h[it.key()] = it.value().dump();
    e.heads.push_back(h);
  }
  EXPECT_EQ(e.reward.size(), pool.size());
  return e;
}

struct Raw {
  int status = 0;
  std::string response;
};

// One TCP connection: sends `first`, calls between() if given, sends `second`, and reads one
// response (headers and Content-Length bytes of body), or until the server closes or 20 s pass.
Raw raw_exchange(int port, const std::string& first, const std::string& second = "",
                 const std::function<void()>& between = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  Raw r;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return r;
  }
  auto send_all = [&](const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      const ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  };
  send_all(first);
  if (between) between();
  send_all(second);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  auto complete = [&] {
    const size_t h = r.response.find("\r\n\r\n");
    if (h == std::string::npos) return false;
    const size_t cl = r.response.find("Content-Length: ");
    const size_t len = cl < h ? std::stoul(r.response.substr(cl + 16)) : 0;
    return r.response.size() >= h + 4 + len;
  };
  for (ssize_t n; !complete() && (n = recv(fd, buf, sizeof buf, 0)) > 0;) r.response.append(buf, static_cast<size_t>(n));
  close(fd);
  if (r.response.rfind("HTTP/1.1 ", 0) == 0) r.status = std::stoi(r.response.substr(9, 3));
  return r;
}

// A client that sends part of a request and goes away.
void send_and_close(int port, const std::string& data) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    (void)n;
  }
  close(fd);
}

bool can_connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string score_body(const std::vector<json>& pool, const std::vector<size_t>& pick) {
  json recs = json::array();
  for (size_t i : pick) recs.push_back(pool[i]);
  return json{{"records", recs}}.dump();
}

// 32 clients at once, each sending requests of 1–8 records drawn (with repeats) from the pool, to
// both scoring endpoints: every reward prints as `cairn score` printed it for that record.
TEST_F(Serve, RewardsEqualCairnScoreUnder32ConcurrentClients) {
  const std::vector<json> pool = record_pool();
  test::TempDir d;
  const Expected want = offline_scores(run1(), pool, d);
  ASSERT_EQ(want.reward.size(), pool.size());
  auto srv = start(run1(), "concurrent", {"--max-wait-ms", "2"});
  std::atomic<int> mismatches{0}, failures{0}, checked{0};
  std::mutex m;
  std::string first_problem;
  auto problem = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(m);
    if (first_problem.empty()) first_problem = what;
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < 32; ++c)
    clients.emplace_back([&, c] {
      httplib::Client http("127.0.0.1", srv->port());
      Rng rng(100 + c);
      for (int q = 0; q < 6; ++q) {
        std::vector<size_t> pick(1 + rng.below(8));
        for (auto& i : pick) i = rng.below(pool.size());
        const bool openrlhf = (c + q) % 3 == 0;
        std::string body;
        if (openrlhf) {  // text records only: /get_reward scores each query as {"text": query}
          json queries = json::array();
          for (auto& i : pick) {
            i = 5 * (i / 5) % (pool.size() - 1);  // index of a {"text"} record
            queries.push_back(pool[i]["text"]);
          }
          body = json{{"query", queries}}.dump();
        } else {
          body = score_body(pool, pick);
        }
        auto res = http.Post(openrlhf ? "/get_reward" : "/v1/score", body, "application/json");
        if (!res || res->status != 200) {
          ++failures;
          problem("request failed: " + (res ? std::to_string(res->status) + " " + res->body : std::string("no response")));
          continue;
        }
        const json j = json::parse(res->body);
        if (j["rewards"].size() != pick.size()) {
          ++failures;
          problem("wrong reward count: " + res->body);
          continue;
        }
        for (size_t k = 0; k < pick.size(); ++k) {
          ++checked;
          if (j["rewards"][k].dump() != want.reward[pick[k]]) {
            ++mismatches;
            problem("record " + std::to_string(pick[k]) + ": served " + j["rewards"][k].dump() + ", cairn score " +
                    want.reward[pick[k]]);
          }
          if (!openrlhf && j["truncated"][k].get<bool>() != (pick[k] == pool.size() - 1)) {
            ++mismatches;
            problem("record " + std::to_string(pick[k]) + ": wrong truncated flag");
          }
        }
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0) << first_problem;
  EXPECT_EQ(mismatches.load(), 0) << first_problem;
  EXPECT_GT(checked.load(), 32 * 6);
  // the access log has one line per request. A worker writes its line after the response has gone
  // out, so the last lines can trail the clients' last answers: stop the server (SIGTERM drains the
  // workers) before counting.
  srv->signal(SIGTERM);
  ASSERT_EQ(srv->wait_exit(30), 0) << srv->log();
  const std::string l = srv->log();
  size_t lines = 0;
  for (size_t at = 0; (at = l.find("\" 200 records=", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 32u * 6u);
}

// Multi-head: "heads" holds one array per head, each value as `cairn score` prints it in "rewards".
TEST_F(Serve, MultiHeadRunReturnsEveryHead) {
  const std::vector<json> pool = record_pool();
  test::TempDir d;
  const Expected want = offline_scores(run3(), pool, d);
  auto srv = start(run3(), "heads");
  httplib::Client http("127.0.0.1", srv->port());
  std::vector<size_t> all(pool.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  auto res = http.Post("/v1/score", score_body(pool, all), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json j = json::parse(res->body);
  ASSERT_EQ(j["heads"].size(), 3u) << res->body;
  for (size_t i = 0; i < pool.size(); ++i) {
    EXPECT_EQ(j["rewards"][i].dump(), want.reward[i]) << i;
    for (const char* h : {"helpful", "harmless", "length"}) EXPECT_EQ(j["heads"][h][i].dump(), want.heads[i].at(h)) << h << " " << i;
  }
  auto model = http.Get("/v1/model");
  ASSERT_TRUE(model);
  const json mj = json::parse(model->body);
  EXPECT_EQ(mj["heads"].size(), 3u);
  EXPECT_EQ(mj["max_seq_len"], 128);
  EXPECT_EQ(mj["tokenizer"]["kind"], "sentencepiece");
  EXPECT_TRUE(mj.contains("version") && mj.contains("config")) << model->body;
}

// Every malformed request gets its status and a message naming what is wrong; after each one a
// well-formed request still gets the right reward.
TEST_F(Serve, MalformedRequestsGetTheirStatusAndTheServerKeepsServing) {
  const std::vector<json> pool = record_pool();
  test::TempDir d;
  const Expected want = offline_scores(run1(), pool, d);
  auto srv = start(run1(), "malformed",
                   {"--max-records", "4", "--max-record-bytes", "300", "--max-body-bytes", "5000"});
  httplib::Client http("127.0.0.1", srv->port());
  struct Case {
    const char* path;
    std::string body;
    int status;
    std::string message;
  };
  const std::string ok = R"({"text": "fine"})";
  const std::vector<Case> cases = {
      {"/v1/score", "{\"records\": [", 400, "request body: invalid JSON"},
      {"/v1/score", "[1, 2]", 400, "request body: expected a JSON object"},
      {"/v1/score", "{}", 400, "missing field \\\"records\\\""},
      {"/v1/score", R"({"records": {"text": "x"}})", 400, "field \\\"records\\\" must be an array"},
      {"/v1/score", "{\"records\": [" + ok + ", {\"prompt\": \"p\"}]}", 400, "records[1]: missing field \\\"response\\\""},
      {"/v1/score", "{\"records\": [" + ok + ", 7]}", 400, "records[1]: expected a JSON object"},
      {"/v1/score", R"({"records": [{"text": 5}]})", 400, "records[0]: field \\\"text\\\" must be a string"},
      {"/v1/score", R"({"records": [{"response": [{"role": "robot", "content": "x"}]}]})", 400,
       "records[0]: \\\"response\\\"[0]: unknown role \\\"robot\\\""},
      {"/v1/score", "{\"records\": [{\"text\": \"\xff\xfe\"}]}", 400, "request body: text is not valid UTF-8"},
      {"/get_reward", "{}", 400, "missing field \\\"query\\\""},
      {"/get_reward", R"({"query": ["a", 3]})", 400, "query[1]: must be a string"},
      {"/v1/score", "{\"records\": [" + ok + "," + ok + "," + ok + "," + ok + "," + ok + "]}", 413,
       "holds 5 entries, over the limit of 4 (--max-records)"},
      {"/v1/score", "{\"records\": [{\"text\": \"" + std::string(400, 'a') + "\"}]}", 413,
       "records[0]: 400 bytes of text, over the limit of 300 (--max-record-bytes)"},
      {"/v1/score", "{\"records\": [{\"text\": \"" + std::string(6000, 'a') + "\"}]}", 413,
       "over the limit of 5000 bytes (--max-body-bytes)"},
      {"/v1/nothing", "{}", 404, "no such endpoint: POST /v1/nothing"},
      {"/health", "{}", 405, "method POST not allowed on /health (use GET)"},
  };
  auto good_request_still_works = [&](const std::string& after) {
    httplib::Client fresh("127.0.0.1", srv->port());
    auto res = fresh.Post("/v1/score", score_body(pool, {0, 1}), "application/json");
    ASSERT_TRUE(res) << "no answer after " << after;
    ASSERT_EQ(res->status, 200) << after;
    const json j = json::parse(res->body);
    EXPECT_EQ(j["rewards"][0].dump(), want.reward[0]) << after;
    EXPECT_EQ(j["rewards"][1].dump(), want.reward[1]) << after;
  };
  for (const Case& c : cases) {
    auto res = http.Post(c.path, c.body, "application/json");
    ASSERT_TRUE(res) << c.body.substr(0, 80);
    EXPECT_EQ(res->status, c.status) << c.body.substr(0, 80) << " → " << res->body;
    EXPECT_NE(res->body.find(c.message), std::string::npos) << c.body.substr(0, 80) << " → " << res->body;
    good_request_still_works(c.body.substr(0, 80));
  }
  // what no client library sends: garbage instead of HTTP, a truncated body, a lying Content-Length
  EXPECT_EQ(raw_exchange(srv->port(), "NOT HTTP AT ALL\r\n\r\n").status, 400);
  good_request_still_works("garbage");
  send_and_close(srv->port(), "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"records\"");
  good_request_still_works("a client gone mid-body");
  EXPECT_EQ(raw_exchange(srv->port(), "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
                                      "Connection: close\r\n\r\n{}").status, 413);
  good_request_still_works("a huge Content-Length");
  for (const char* len : {"-5", "12abc", "+3", "0x10", "99999999999999999999999"}) {  // strtoull would take them
    const Raw bad = raw_exchange(srv->port(), std::string("POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: ") + len +
                                                  "\r\nConnection: close\r\n\r\n{}");
    EXPECT_EQ(bad.status, 400) << len << ": " << bad.response;
    EXPECT_NE(bad.response.find("malformed Content-Length"), std::string::npos) << len << ": " << bad.response;
  }
  const Raw two = raw_exchange(srv->port(), "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                            "Content-Length: 40\r\nConnection: close\r\n\r\n{}");
  EXPECT_EQ(two.status, 400) << two.response;
  EXPECT_NE(two.response.find("more than one Content-Length"), std::string::npos) << two.response;
  good_request_still_works("malformed Content-Lengths");
  // bodies whose size httplib would not check against --max-body-bytes: chunked, or no length at all
  const std::string big = "{\"records\": [{\"text\": \"" + std::string(6000, 'a') + "\"}]}";
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", big.size());
  const Raw chunked = raw_exchange(srv->port(), "POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                                   size_line + big + "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.status, 411) << chunked.response;
  EXPECT_NE(chunked.response.find("Transfer-Encoding is not accepted"), std::string::npos) << chunked.response;
  good_request_still_works("a chunked body");
  const Raw no_length = raw_exchange(srv->port(), "POST /get_reward HTTP/1.1\r\nHost: x\r\n\r\n", big);
  EXPECT_EQ(no_length.status, 411) << no_length.response;
  good_request_still_works("a body without a length");
  for (const char* method : {"PUT", "PATCH", "DELETE"}) {  // httplib reads a body for these methods too
    const Raw other = raw_exchange(srv->port(), std::string(method) + " /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                                   size_line + big + "\r\n0\r\n\r\n");
    EXPECT_EQ(other.status, 411) << method << ": " << other.response;
  }
  good_request_still_works("chunked PUT, PATCH, DELETE");
  // the access log names each refusal
  EXPECT_NE(srv->log().find("\"POST /v1/score\" 413 "), std::string::npos) << srv->log();
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("cairn_requests_total{endpoint=\"/v1/score\",code=\"400\"}"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("cairn_request_duration_seconds{endpoint=\"/v1/score\",quantile=\"0.99\"}"),
            std::string::npos) << metrics->body;
}

// --api-key-file: every endpoint but /health needs "Authorization: Bearer KEY"; without the flag
// nothing does (the other tests send no token).
TEST_F(Serve, BearerTokenWhenAnApiKeyFileIsGiven) {
  test::TempDir d;
  auto srv = start(run1(), "auth", {"--api-key-file", d.write("key", "s3cret-key\n")});
  httplib::Client http("127.0.0.1", srv->port());
  const std::string body = R"({"records": [{"text": "hello"}]})";
  auto none = http.Post("/v1/score", body, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(none->body.find("missing bearer token"), std::string::npos) << none->body;
  for (const char* wrong : {"Bearer s3cret-kex", "Bearer s3cret-key2", "Bearer ", "s3cret-key", "Basic s3cret-key"}) {
    auto res = http.Post("/v1/score", {{"Authorization", wrong}}, body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401) << wrong;
    EXPECT_NE(res->body.find("wrong bearer token"), std::string::npos) << res->body;
  }
  for (const char* path : {"/v1/model", "/metrics"}) {
    auto res = http.Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401) << path;
  }
  const httplib::Headers key = {{"Authorization", "Bearer s3cret-key"}};
  auto good = http.Post("/v1/score", key, body, "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
  // the scheme name is case-insensitive (RFC 7235), the key is not
  auto lower = http.Post("/v1/score", {{"Authorization", "bearer s3cret-key"}}, body, "application/json");
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->status, 200) << lower->body;
  auto upper_key = http.Post("/v1/score", {{"Authorization", "BEARER S3CRET-KEY"}}, body, "application/json");
  ASSERT_TRUE(upper_key);
  EXPECT_EQ(upper_key->status, 401);
  auto openrlhf = http.Post("/get_reward", key, R"({"query": ["hello"]})", "application/json");
  ASSERT_TRUE(openrlhf);
  EXPECT_EQ(openrlhf->status, 200) << openrlhf->body;
  EXPECT_EQ(json::parse(openrlhf->body)["rewards"], json::parse(good->body)["rewards"]);
  auto health = http.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  // no auth: the same request without a token is fine
  auto open = start(run1(), "noauth");
  auto res = httplib::Client("127.0.0.1", open->port()).Post("/v1/score", body, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["rewards"], json::parse(good->body)["rewards"]);
  // an empty key file is a usage error
  int code = 0;
  const std::string out = cli("serve --model " + run1() + " --api-key-file " + d.write("empty", "\n"), &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("is empty"), std::string::npos) << out;
}

// SIGTERM while a request is in flight (its body half sent): the server stops accepting
// connections, the request completes with the right rewards, then the process exits with 0.
TEST_F(Serve, SigtermDrainsTheRequestInFlightThenExitsZero) {
  const std::vector<json> pool = record_pool();
  test::TempDir d;
  const Expected want = offline_scores(run1(), pool, d);
  auto srv = start(run1(), "drain");
  const std::string body = score_body(pool, {0, 1, 2, 3});
  const std::string head = "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  bool refused = false;
  const Raw r = raw_exchange(srv->port(), head + body.substr(0, 10), body.substr(10), [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the request is being read
    srv->signal(SIGTERM);
    for (int i = 0; i < 500 && !refused; ++i) {  // wait until the listening socket is closed
      refused = !can_connect(srv->port());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  EXPECT_TRUE(refused) << "still accepting connections after SIGTERM\n" << srv->log();
  ASSERT_EQ(r.status, 200) << r.response << "\n" << srv->log();
  const json j = json::parse(r.response.substr(r.response.find("\r\n\r\n") + 4));
  for (size_t k = 0; k < 4; ++k) EXPECT_EQ(j["rewards"][k].dump(), want.reward[k]);
  const std::string log = srv->log();
  EXPECT_EQ(srv->wait_exit(30), 0) << log;
  EXPECT_NE(srv->log().find("cairn serve: stopped"), std::string::npos) << srv->log();
}

TEST_F(Serve, CommandLine) {
  int code = 0;
  std::string out = cli("serve --help", &code);
  EXPECT_EQ(code, 0);
  for (const char* flag : {"--model", "--host", "--port", "--api-key-file", "--max-body-bytes", "--max-records",
                           "--max-record-bytes", "--token-budget", "--max-wait-ms", "--device", "--threads"})
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  EXPECT_EQ((cli("serve", &code), code), 2);
  EXPECT_EQ((cli("serve --model " + run1() + " --port 70000", &code), code), 2);
  EXPECT_EQ((cli("serve --model " + run1() + " --max-records 0", &code), code), 2);
  out = cli("serve --model " + run1() + " --api-key-file /nonexistent/key", &code);
  EXPECT_EQ(code, 2) << out;
  // binds loopback by default
  auto srv = start(run1(), "default-host");
  EXPECT_NE(srv->log().find("listening on http://127.0.0.1:"), std::string::npos) << srv->log();
}

}  // namespace
}  // namespace cairn
