// A `cairn serve` child process on a loopback port, for `cairn bench serve` and the tests: started
// with --port 0, its stderr in a file, ready once it prints "listening on http://HOST:PORT".
// Header-only (the test binary uses it without linking the CLI).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cairn::serve {

class ServerProcess {
 public:
  // Runs `binary serve ARGS --port 0` (ARGS must not hold --port) with stderr into log_path; waits
  // up to timeout_s for its port. std::runtime_error (with the log) when it exits or times out.
  ServerProcess(const std::string& binary, const std::vector<std::string>& args, std::string log_path,
                double timeout_s = 60)
      : log_(std::move(log_path)) {
    std::vector<std::string> argv = {binary, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--port", "0"});
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, STDERR_FILENO);
      std::vector<char*> c;
      for (auto& s : argv) c.push_back(s.data());
      c.push_back(nullptr);
      execv(c[0], c.data());
      _exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < until) {
      const std::string l = log();
      const size_t at = l.find("listening on http://");
      if (at != std::string::npos) {
        const size_t colon = l.find(':', at + 20), end = l.find_first_not_of("0123456789", colon + 1);
        if (colon != std::string::npos && end != std::string::npos && end > colon + 1) {
          port_ = std::stoi(l.substr(colon + 1, end - colon - 1));
          return;
        }
      }
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("cairn serve exited before listening:\n" + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill_now();
    throw std::runtime_error("cairn serve did not start listening within the timeout:\n" + log());
  }
  ~ServerProcess() { kill_now(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Waits up to timeout_s for the process to exit: its exit code, 128 + signal when killed by one,
  // −1 when it was still running (it is then killed).
  int wait_exit(double timeout_s) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (pid_ > 0 && std::chrono::steady_clock::now() < until) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill_now();
    return -1;
  }
  // Peak resident memory (VmHWM) in MiB, from /proc; −1 when unreadable.
  double peak_rss_mib() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    return -1;
  }

 private:
  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace cairn::serve
