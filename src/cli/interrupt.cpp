// Signal handling, see interrupt.h. The handler only touches lock-free atomics, fixed buffers,
// strings it does not modify and unlink(2)/rmdir(2)/write(2)/_exit(2), all async-signal-safe (the
// in-flight temp files too: remove_inflight_temp_files).
#include "cli/interrupt.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "cairn/io.h"

namespace cairn::cli {
namespace {

std::atomic<bool> g_graceful{false}, g_stop{false};
// Two message buffers: a new message is written into the one not in use, then published by pointer,
// so the handler never reads a half-written line.
char g_buffers[2][448];
std::atomic<const char*> g_message{"cairn: interrupted\n"};
// The graceful mode's lines: on the first signal, and on the second (which exits at once).
std::atomic<const char*> g_first_note{nullptr}, g_second_note{nullptr};
int g_next_buffer = 0;
// What the handler removes before exiting in immediate mode: two static slots, filled in turn and
// then published by pointer, so the handler only reads settled strings (a slot is unpublished
// before it is refilled, and before it is destroyed at exit).
struct Cleanup;
std::atomic<const Cleanup*> g_cleanup{nullptr};
struct Cleanup {
  std::vector<std::string> files, dirs;
  ~Cleanup() {
    const Cleanup* self = this;
    g_cleanup.compare_exchange_strong(self, nullptr);
  }
};
Cleanup g_cleanup_slots[2];
int g_next_cleanup = 0;
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<const char*>::is_always_lock_free);

void say(const char* msg) {
  const ssize_t ignored = write(STDERR_FILENO, msg, std::strlen(msg));
  (void)ignored;
}

void say_and_exit(const char* msg) {
  remove_inflight_temp_files();  // a file being written when the signal came: its temp file goes too
  if (const Cleanup* c = g_cleanup.load()) {
    for (const std::string& f : c->files) unlink(f.c_str());
    for (const std::string& d : c->dirs) rmdir(d.c_str());
  }
  say(msg);
  _exit(130);
}

void on_signal(int) {
  if (!g_graceful.load()) say_and_exit(g_message.load());
  if (g_stop.exchange(true)) say_and_exit(g_second_note.load());
  say(g_first_note.load());
}

void set_interrupt_mask(int how) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  sigprocmask(how, &s, nullptr);
}

}  // namespace

void block_interrupt_signals() { set_interrupt_mask(SIG_BLOCK); }

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  set_interrupt_mask(SIG_UNBLOCK);  // blocked across main's re-exec: a signal pending since then arrives now
}

void set_interrupt_message(const char* msg) {
  char* b = g_buffers[g_next_buffer];
  g_next_buffer ^= 1;
  std::snprintf(b, sizeof g_buffers[0], "%s\n", msg);
  g_message.store(b);
}

void set_interrupt_cleanup(const std::vector<std::string>& files, const std::vector<std::string>& dirs) {
  Cleanup& c = g_cleanup_slots[g_next_cleanup];
  g_next_cleanup ^= 1;
  const Cleanup* mine = &c;
  g_cleanup.compare_exchange_strong(mine, nullptr);  // not published while it changes
  c.files = files, c.dirs = dirs;
  g_cleanup.store(&c);
}

void clear_interrupt_cleanup() { g_cleanup.store(nullptr); }

const std::atomic<bool>& enter_graceful_interrupts(const char* first_note, const char* second_note) {
  g_first_note = first_note;
  g_second_note = second_note;
  g_graceful = true;
  return g_stop;
}

}  // namespace cairn::cli
