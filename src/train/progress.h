// Progress reporting for long work: a live, rewritten line on a terminal (step/total, loss, acc,
// tokens/s, ETA); plain periodic lines when stderr is not a terminal (logs, CI).
#pragma once
#include <string>

namespace cairn {

class Progress {
 public:
  // total ≤ 0: unknown. plain_every: in non-terminal mode, print every this many updates.
  Progress(std::string what, long total, int plain_every = 50);
  // Reports `done` units finished; `fields` is appended as is (e.g. "loss 0.612 acc 0.70").
  void update(long done, const std::string& fields, bool force = false);
  // Ends the live line (prints a newline if one is pending).
  void finish();
  static std::string eta_string(double seconds);

 private:
  std::string what_;
  long total_;
  int plain_every_;
  bool tty_;
  double t0_, last_print_ = 0;
  long first_done_ = -1;
  double first_t_ = 0;
  bool pending_newline_ = false;
  long updates_ = 0;
};

}  // namespace cairn
