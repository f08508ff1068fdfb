// Crash safety through the `cairn` binary: a tiny training run is killed again and again — SIGKILL at
// random instants, some of them inside checkpoint writes (caught by watching the run directory for
// our temp files), and SIGINT/SIGTERM — and resumed each time until it finishes. Its weights,
// optimizer state and trainer state must then be byte-identical to an uninterrupted run's
// (docs/run-directory.md#commit-protocol).
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "test_tmpdir.h"
#include "util/rng.h"

namespace fs = std::filesystem;

namespace cairn {
namespace {

using Clock = std::chrono::steady_clock;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string pairs_jsonl(int n, uint64_t seed) {
  Rng r(seed);
  const char* words[] = {"kind", "careful", "rude", "short", "helpful", "vague", "clear", "wrong"};
  std::string s;
  for (int i = 0; i < n; ++i) {
    std::string a, b;
    for (int k = 0; k < 6; ++k) a += std::string(words[r.below(8)]) + " ";
    for (int k = 0; k < 3; ++k) b += std::string(words[r.below(8)]) + " ";
    s += nlohmann::json({{"prompt", "question " + std::to_string(i % 17)}, {"chosen", a}, {"rejected", b}}).dump() + "\n";
  }
  return s;
}

// A child process running `cairn ARGS` with stdout/stderr into `log`.
struct Child {
  pid_t pid = -1;
  static Child start(const std::vector<std::string>& args, const std::string& log) {
    Child c;
    c.pid = fork();
    if (c.pid == 0) {
      // SIGINT/SIGTERM blocked across the exec, as main's own re-exec does: a signal sent before
      // main() has installed its handlers waits for them (unblocked, it would get the default
      // action, and a slow start on a loaded machine made such a kill exit 143 instead of 130).
      sigset_t s;
      sigemptyset(&s);
      sigaddset(&s, SIGINT);
      sigaddset(&s, SIGTERM);
      sigprocmask(SIG_BLOCK, &s, nullptr);
      FILE* f = std::fopen(log.c_str(), "ab");
      if (f) dup2(fileno(f), 1), dup2(fileno(f), 2);
      std::vector<char*> argv{const_cast<char*>(CAIRN_BINARY)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(CAIRN_BINARY, argv.data());
      _exit(127);
    }
    return c;
  }
  // Exit code, 128 + signal if killed, -1 if still running (when !block).
  int wait(bool block = true) {
    int st = 0;
    const pid_t r = waitpid(pid, &st, block ? 0 : WNOHANG);
    if (r == 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
};

// Watches a directory for the creation of our temp files (inotify: the kill then lands within
// microseconds of the write starting, inside it).
struct TempFileWatch {
  int fd = -1;
  explicit TempFileWatch(const fs::path& dir) {
    fs::create_directories(dir);
    fd = inotify_init1(IN_NONBLOCK);
    if (fd >= 0) inotify_add_watch(fd, dir.c_str(), IN_CREATE);
  }
  ~TempFileWatch() {
    if (fd >= 0) close(fd);
  }
  // Waits up to timeout_ms; the name of a *.tmp.* file created meanwhile, else "".
  std::string wait_for_temp(int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (fd < 0 || poll(&p, 1, timeout_ms) <= 0) return "";
    alignas(inotify_event) char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (ev->len && std::string(ev->name).find(".tmp.") != std::string::npos) return ev->name;
      off += sizeof(inotify_event) + ev->len;
    }
    return "";
  }
};

bool has_temp_file(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    train_ = dir_.write("train.jsonl", pairs_jsonl(160, 1));
    valid_ = dir_.write("valid.jsonl", pairs_jsonl(40, 2));
    int code = 0;
    const std::string out = test::run_capture(std::string(CAIRN_BINARY) + " tokenizer train --input " + train_ +
                                                  " --out " + dir_.file("tok.model") + " --vocab-size 300 2>&1",
                                              &code);
    ASSERT_EQ(code, 0) << out;
  }
  std::vector<std::string> args(const std::string& out, bool resume) const {
    std::vector<std::string> a{"train",     "--train",   train_,  "--valid",        valid_,  "--out",        out,
                               "--tokenizer", dir_.file("tok.model"), "--d-model", "64", "--n-layers", "2",
                               "--n-heads", "2",   "--d-ff",    "128",   "--max-seq-len", "48",  "--batch-pairs", "4",
                               "--steps",   "120",  "--eval-every", "7", "--save-every", "1", "--threads", "1"};
    if (resume) a.push_back("--resume");
    return a;
  }
  // The three files that define where a run stands.
  static std::vector<std::string> state(const fs::path& run) {
    return {slurp(run / "model.safetensors"), slurp(run / "optimizer.safetensors"), slurp(run / "trainer_state.json"),
            slurp(run / "config.json")};
  }
  // Runs `run` to completion, interrupting each attempt with `sig` after a random delay (or, for
  // every other attempt when watch_writes, as soon as a checkpoint temp file appears), `kills` times.
  // Returns the number of attempts that were interrupted while a temp file existed.
  int run_with_interruptions(const fs::path& run, int sig, int kills, bool watch_writes, double ref_seconds,
                             uint64_t seed) {
    Rng r(seed);
    int in_write = 0, done = 0;
    const std::string log = dir_.file("log.txt");
    // `kills` interruptions, and with watch_writes more (up to 60 in all) until 3 landed in a write
    for (int attempt = 0; attempt < kills || (watch_writes && in_write < 3 && attempt < 60); ++attempt) {
      const bool resume = fs::exists(run / "optimizer.safetensors");
      const bool wait_for_write = watch_writes && attempt % 2 == 1;
      TempFileWatch watch(run);
      Child c = Child::start(args(run.string(), resume), log);
      // a write some way into the run, not always the first one
      int skip_writes = static_cast<int>(r.below(40));
      // a random instant in the first third of a run's length (each attempt leaves work for the
      // next), after the first 50 ms
      const auto deadline = Clock::now() + std::chrono::duration<double>(0.05 + r.uniform() * ref_seconds / 3);
      int code = -1;
      std::string temp;  // the temp file whose write the kill aims at
      while ((code = c.wait(false)) < 0) {
        if (wait_for_write) {
          temp = watch.wait_for_temp(5);
          if (!temp.empty() && skip_writes-- == 0) break;
          temp.clear();
        } else if (Clock::now() >= deadline) {
          break;
        } else {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
      if (code < 0) {
        kill(c.pid, sig);
        code = c.wait();
        in_write += !temp.empty() && fs::exists(run / temp);  // the write was still in flight when killed
        // SIGKILL: killed; SIGINT/SIGTERM: 130 (checkpoint saved, or nothing started yet).
        if (sig == SIGKILL) EXPECT_EQ(code, 128 + SIGKILL);
        else EXPECT_EQ(code, 130) << slurp(log);
      } else {
        EXPECT_EQ(code, 0) << slurp(log);
        ++done;
        break;  // finished before the interruption
      }
    }
    // Finish the run.
    while (!done) {
      Child c = Child::start(args(run.string(), fs::exists(run / "optimizer.safetensors")), log);
      const int code = c.wait();
      EXPECT_EQ(code, 0) << slurp(log);
      done = 1;
    }
    return in_write;
  }
  test::TempDir dir_;
  std::string train_, valid_;
};

double reference_run(const std::vector<std::string>& a, const std::string& log) {
  const auto t0 = Clock::now();
  Child c = Child::start(a, log);
  EXPECT_EQ(c.wait(), 0);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

TEST_F(CrashTest, SigkillAtRandomInstantsResumesToIdenticalState) {
  const fs::path ref = dir_.file("ref"), run = dir_.file("run");
  const double t_ref = reference_run(args(ref.string(), false), dir_.file("ref.log"));
  const std::vector<std::string> want = state(ref);
  const int in_write = run_with_interruptions(run, SIGKILL, 16, true, t_ref, 7);
  EXPECT_GE(in_write, 3) << "too few kills landed inside a checkpoint write (reference run " << t_ref << " s)";
  EXPECT_EQ(state(run), want) << "resumed run differs from the uninterrupted one";
  // No stale temp files of ours survive a finished resume.
  EXPECT_FALSE(has_temp_file(run));
  RecordProperty("kills_inside_writes", in_write);
  std::printf("[ crash    ] SIGKILLs: %d inside a checkpoint write; resumed state identical\n", in_write);
}

TEST_F(CrashTest, SigintAndSigtermCheckpointAndResumeIdentically) {
  const fs::path ref = dir_.file("ref"), run_int = dir_.file("run_int"), run_term = dir_.file("run_term");
  const double t_ref = reference_run(args(ref.string(), false), dir_.file("ref.log"));
  const std::vector<std::string> want = state(ref);
  run_with_interruptions(run_int, SIGINT, 6, false, t_ref, 11);
  run_with_interruptions(run_term, SIGTERM, 6, false, t_ref, 13);
  EXPECT_EQ(state(run_int), want);
  EXPECT_EQ(state(run_term), want);
}

// SIGINT while train sets up (after the tokenizer is written into the run directory, while 40,000
// pairs are read and tokenized) removes the run directory it created, and the parents it created;
// the same command then trains from scratch.
TEST_F(CrashTest, InterruptBeforeTheFirstStepRemovesTheRunDirectoryItCreated) {
  const std::string big = dir_.write("big.jsonl", pairs_jsonl(40000, 3));
  const fs::path top = dir_.file("new"), run = top / "a" / "run";
  const std::vector<std::string> a{"train", "--train", big, "--out", run.string(), "--tokenizer", dir_.file("tok.model"),
                                   "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--d-ff", "64",
                                   "--max-seq-len", "32", "--batch-pairs", "4", "--steps", "2", "--threads", "1"};
  const std::string log = dir_.file("setup.log");
  Child c = Child::start(a, log);
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  int code = -1;
  while ((code = c.wait(false)) < 0 && !fs::exists(run / "tokenizer.model") && Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  ASSERT_LT(code, 0) << "train ended before its tokenizer was seen: " << slurp(log);
  kill(c.pid, SIGINT);
  EXPECT_EQ(c.wait(), 130) << slurp(log);
  EXPECT_NE(slurp(log).find("no checkpoint written, the new run directory removed"), std::string::npos) << slurp(log);
  EXPECT_FALSE(fs::exists(top)) << slurp(log);
  Child again = Child::start(a, log);
  EXPECT_EQ(again.wait(), 0) << slurp(log);
  EXPECT_TRUE(fs::exists(run / "optimizer.safetensors"));
}

// SIGINT while `cairn score` streams its output (its input a FIFO that stays open, so the output's
// temp file is certainly being written): the temp file is removed, and the output from before is
// untouched.
TEST_F(CrashTest, InterruptWhileAnOutputIsWrittenRemovesItsTempFileAndKeepsTheOldOne) {
  const std::string run = dir_.file("run"), fifo = dir_.file("records.fifo"), out = dir_.file("scored.jsonl");
  const fs::path here = fs::path(out).parent_path();
  std::vector<std::string> a = args(run, false);
  *(std::find(a.begin(), a.end(), "--steps") + 1) = "4";
  Child t = Child::start(a, dir_.file("train.log"));
  ASSERT_EQ(t.wait(), 0) << slurp(dir_.file("train.log"));
  const std::string old = "{\"reward\": 1}\n";
  dir_.write("scored.jsonl", old);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string log = dir_.file("score.log");
  Child c = Child::start({"score", "--model", run, "--input", fifo, "--output", out, "--threads", "1"}, log);
  int w = -1;  // the FIFO's write end, once score has opened it for reading
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (w < 0 && c.wait(false) < 0 && Clock::now() < give_up) {
    w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(w, 0) << "score did not open its input: " << slurp(log);
  const std::string rec = "{\"text\": \"kind careful clear\"}\n";
  ASSERT_EQ(write(w, rec.data(), rec.size()), static_cast<ssize_t>(rec.size()));
  while (!has_temp_file(here) && c.wait(false) < 0 && Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(has_temp_file(here)) << "no temp file of the output appeared: " << slurp(log);
  kill(c.pid, SIGINT);
  EXPECT_EQ(c.wait(), 130) << slurp(log);
  close(w);
  EXPECT_FALSE(has_temp_file(here)) << slurp(log);
  EXPECT_EQ(slurp(out), old);
}

}  // namespace
}  // namespace cairn
