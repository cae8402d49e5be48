#include "cli/common/progress.h"

#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

namespace rp::cli {
namespace {

double mono_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

Progress::Progress(FILE* out, double log_interval_s) : Progress(out, isatty(fileno(out)) == 1, log_interval_s) {}

Progress::Progress(FILE* out, bool tty, double log_interval_s) : out_(out), tty_(tty), interval_(log_interval_s) {}

Progress::~Progress() { finish(); }

void Progress::clear() {
  if (tty_ && shown_) {
    std::fputs("\r\033[K", out_);
    shown_ = false;
  }
}

void Progress::status(const std::string& text) {
  if (text == last_status_ && (tty_ || shown_)) return;
  last_status_ = text;
  if (tty_) {
    winsize ws{};
    std::string t = text;
    if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 4 && t.size() >= ws.ws_col) t.resize(ws.ws_col - 1);
    std::fputs("\r\033[K", out_);
    std::fputs(t.c_str(), out_);
    shown_ = true;
  } else {
    const double now = mono_s();
    if (now - last_log_ < interval_) return;
    last_log_ = now;
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

void Progress::line(const std::string& text) {
  clear();
  std::fprintf(out_, "%s\n", text.c_str());
  if (tty_ && !last_status_.empty()) {
    std::fputs(last_status_.c_str(), out_);
    shown_ = true;
  }
  std::fflush(out_);
}

void Progress::finish() {
  clear();
  last_status_.clear();
  std::fflush(out_);
}

}  // namespace rp::cli
