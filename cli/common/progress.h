// Progress on the console. On a terminal: one status line, rewritten in place, and lines
// that stay (a variant's result) printed above it. In a log (not a TTY): the status at most
// every `log_interval_s` seconds, so a CI log gets a heartbeat and not a line per event,
// and the lines that stay as they come.
#pragma once

#include <cstdio>
#include <string>

namespace rp::cli {

class Progress {
 public:
  explicit Progress(FILE* out = stdout, double log_interval_s = 10);
  Progress(FILE* out, bool tty, double log_interval_s);
  ~Progress();

  // The current state ("[12/32] close_listener_with_queued_children/tcp4_..."); cheap to
  // call on every event.
  void status(const std::string& text);
  // A line that stays.
  void line(const std::string& text);
  // Removes the status line (terminal only).
  void finish();
  bool tty() const { return tty_; }

 private:
  void clear();
  FILE* out_;
  bool tty_;
  double interval_, last_log_ = -1e18;
  bool shown_ = false;
  std::string last_status_;
};

}  // namespace rp::cli
