// cairn entry point: finds the subcommand (one or two words) and runs it, mapping errors to exit codes.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

#include <cxxopts.hpp>

#include "cairn/dist.h"
#include "cairn/errors.h"
#include "cairn/version.h"
#include "cli/command.h"
#include "cli/interrupt.h"

namespace cairn::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace cairn::cli

static void print_usage() {
  std::printf("cairn — reward-model trainer (Bradley–Terry on preference pairs)\n\nUsage: cairn <command> [options]\n\nCommands:\n");
  for (const auto& c : cairn::cli::registry()) std::printf("  %-18s %s\n", c.name.c_str(), c.summary.c_str());
  std::printf("\nRun `cairn <command> --help` for its options.\nExit codes: 0 ok, 1 runtime failure, 2 usage error, 3 bad input data, 130 interrupted.\n");
}

// OpenMP threads that wait at a barrier spin by default (libgomp: ~300k iterations), which on a
// machine shared with other processes burns the time slices the threads being waited for need:
// measured 1.3–2.4× slower steps on 2 loaded cores (docs/cli.md#environment). libgomp reads its
// wait policy once, when it is loaded, so unless the user chose one, cairn re-executes itself once
// with OMP_WAIT_POLICY=passive. If that fails it simply runs on.
// SIGINT/SIGTERM stay blocked across the exec (the mask and pending signals survive it) until the
// handlers are installed, so a signal in that window is not lost to the default action.
static void choose_omp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  cairn::cli::block_interrupt_signals();
  execv("/proc/self/exe", argv);
}

// Data parallel (docs/distributed.md): under mpirun/srun every rank runs the same command. Ranks
// other than 0 compute what rank 0 prints, so their stderr goes to /dev/null (CAIRN_LOG_ALL_RANKS=1
// keeps it); their errors still reach the terminal, through `errors`, named by rank.
static FILE* quiet_other_ranks() {
  const cairn::dist::Comm& w = cairn::dist::world();
  const char* all = std::getenv("CAIRN_LOG_ALL_RANKS");
  if (!w.distributed() || w.root() || (all && *all && std::string(all) != "0")) return stderr;
  const int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
  FILE* errors = saved >= 0 ? fdopen(saved, "w") : nullptr;
  if (!errors || null < 0) return stderr;
  dup2(null, STDERR_FILENO);
  close(null);
  setvbuf(errors, nullptr, _IONBF, 0);
  return errors;
}

static int run_command(const cairn::cli::Command* found, int argc, char** argv, FILE* err);

int main(int argc, char** argv) {
  // A closed pipe on stdout is a write error (exit 1, "cannot write to stdout"), not a silent death
  // by SIGPIPE; sockets (serve) get EPIPE the same way.
  std::signal(SIGPIPE, SIG_IGN);
  choose_omp_wait_policy(argv);
  cairn::cli::install_interrupt_handlers();
  cairn::dist::init(&argc, &argv);
  // A build without MPI under mpirun would be K separate runs writing one run directory: refused.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* n = std::getenv(v); !cairn::dist::mpi_built() && n && std::atoi(n) > 1) {
      std::fprintf(stderr, "cairn: launched as one of %s processes (%s), but this cairn was built without MPI; "
                   "rebuild with libopenmpi-dev installed (docs/distributed.md) or run one process\n", n, v);
      return 2;
    }
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("cairn %s\n", CAIRN_VERSION);
    return 0;
  }
  // Longest match first: "bench attention" before "bench".
  const cairn::cli::Command* found = nullptr;
  int consumed = 0;
  for (const auto& c : cairn::cli::registry()) {
    std::string two = argc >= 3 ? std::string(argv[1]) + " " + argv[2] : std::string();
    if (c.name == two) { found = &c; consumed = 2; break; }
  }
  if (!found)
    for (const auto& c : cairn::cli::registry())
      if (c.name == argv[1]) { found = &c; consumed = 1; break; }
  if (!found) {
    std::fprintf(stderr, "cairn: unknown command '%s'\n\n", argv[1]);
    print_usage();
    return 2;
  }
  std::vector<char*> args;
  args.push_back(argv[0]);
  for (int i = 1 + consumed; i < argc; ++i) args.push_back(argv[i]);
  cairn::dist::Comm& world = cairn::dist::world();
  FILE* err = quiet_other_ranks();
  const int code = run_command(found, static_cast<int>(args.size()), args.data(), err);
  if (world.distributed() && code != 0 && code != 130) {
    // A failing rank ends the job: the others may be waiting for it inside a collective.
    std::fprintf(err, "rank %d of %d: stopping every rank (exit %d)\n", world.rank(), world.size(), code);
    std::fflush(err);
    world.abort(code);
  }
  cairn::dist::finalize();
  return code;
}

static int run_command(const cairn::cli::Command* found, int argc, char** argv, FILE* err) {
  std::string prog = "cairn " + found->name;
  std::string where;
  if (cairn::dist::world().distributed())
    where = "rank " + std::to_string(cairn::dist::world().rank()) + ": ";
  std::vector<char*> args(argv, argv + argc);
  args[0] = prog.data();
  try {
    const int code = found->run(static_cast<int>(args.size()), args.data());
    // The results on stdout (eval's table or JSON, bench tables, pairs --json) count as output too.
    std::cout.flush();
    if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout)
      throw std::runtime_error(std::string("cannot write to stdout: ") + std::strerror(errno));
    return code;
  } catch (const cairn::DataError& e) {
    std::fprintf(err, "%serror: %s\n", where.c_str(), e.what());
    return 3;
  } catch (const cairn::UsageError& e) {
    std::fprintf(err, "%s%s: %s\n(see `%s --help`)\n", where.c_str(), prog.c_str(), e.what(), prog.c_str());
    return 2;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(err, "%s%s: %s\n(see `%s --help`)\n", where.c_str(), prog.c_str(), e.what(), prog.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(err, "%s%s: error: %s\n", where.c_str(), prog.c_str(), e.what());
    return 1;
  }
}
