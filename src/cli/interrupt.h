// SIGINT/SIGTERM for every command (docs/cli.md#interrupts). main() installs the handlers before
// anything else runs. By default a signal ends the process at once with exit 130 and a one-line
// message (outputs are written atomically, so nothing already written is damaged). A command with
// a place to stop cleanly (train's step loop) switches to graceful mode: the first signal only sets
// the flag it polls; a second one exits at once.
#pragma once
#include <atomic>
#include <string>
#include <vector>

namespace cairn::cli {

// Blocks SIGINT and SIGTERM (the mask and pending signals survive exec); install_interrupt_handlers
// unblocks them once the handlers are in place.
void block_interrupt_signals();
void install_interrupt_handlers();
// The line printed when a signal ends the process in immediate mode (copied, cut at 446 bytes; call from one thread).
void set_interrupt_message(const char* msg);
// While set, a signal in immediate mode first removes these files, then these directories (each only
// if empty, in the order given), as unlink(2)/rmdir(2) in the handler: what a command created and
// would otherwise leave half set up (train's new run directory before its first step). Copied; call
// from one thread. clear_interrupt_cleanup() forgets them.
void set_interrupt_cleanup(const std::vector<std::string>& files, const std::vector<std::string>& dirs);
void clear_interrupt_cleanup();
// From now on the first signal sets the returned flag (and prints first_note) instead of exiting; a
// second one prints second_note and exits with 130. The notes must outlive the process (literals).
const std::atomic<bool>& enter_graceful_interrupts(
    const char* first_note = "\ninterrupt: stopping at the next block boundary, then saving a checkpoint (again to exit at once)\n",
    const char* second_note = "\nsecond interrupt: exiting now without saving; the last checkpoint is intact\n");

}  // namespace cairn::cli
