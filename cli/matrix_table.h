// What `matrix` and `merge` share: the state built from the kernel matrix driver's events
// (plan, kernel, progress, record: JSON lines, see ci/matrix/common.py emit), the case x
// kernel table printed from it, and the --json document (reuseport-check/matrix/1).
// `merge` replays the events ci/matrix/merge.py writes for the merged shards, so both
// commands print the same table and document from the same records.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace rp::cli::matrix {

struct KernelState {
  std::string state = "waiting", release, error, console_log;
  int done = 0, total = 0;
  double duration_s = -1;
  std::string shown;  // the last state a line that stays was printed for
};

struct State {
  std::vector<std::string> kernels, variants;
  std::map<std::string, KernelState> by_kernel;
  std::map<std::pair<std::string, std::string>, nlohmann::json> records;  // (kernel, c/v)
  // Under --shard: the whole plan (index, count, kernels, variants) for the --json
  // document, and how many items each kernel of this shard runs (fewer than `variants`).
  nlohmann::json shard;
  std::map<std::string, size_t> items;

  // (kernel, state) in the order the states came: one poll may read a kernel's booting,
  // its first progress and more at once, and each deserves its line.
  std::vector<std::pair<std::string, std::string>> transitions;

  void apply(const nlohmann::json& ev);

  // The records `kernel` will have once it finished.
  size_t expected(const std::string& kernel) const;
  // Verdict -> count over the records of `kernel` so far; `n` their number.
  std::map<std::string, int> verdicts(const std::string& kernel, size_t* n = nullptr) const;
};

// Reads the lines appended to an events file since the last call.
class EventFile {
 public:
  explicit EventFile(std::string path) : path_(std::move(path)) {}
  void poll(State& s);

 private:
  std::string path_;
  size_t offset_ = 0;
};

// FAIL, XPASS, ERROR (and anything unknown): a cell that fails the matrix.
bool bad(const std::string& verdict);

// The table (rows case/variant, columns kernels, '*' where verdicts differ), each kernel's
// totals and errors, and a closing line; returns the number of FAIL/XPASS/ERROR cells.
int print_table(const State& s, bool tty);

// reuseport-check/matrix/1 (results/schemas/matrix.schema.json).
nlohmann::json document(const State& state, bool complete);

}  // namespace rp::cli::matrix
