// `reuseport-check run`: execute the conformance cases on the running kernel (each variant
// isolated in its own network namespace) and print what was expected, what was observed
// and the verdict. With --json, each record is saved the moment it exists (run_output.h);
// --resume runs only what an earlier, interrupted run did not finish.

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cases/lib/case.h"
#include "cases/lib/expectations.h"
#include "cases/lib/kernel.h"
#include "cases/lib/record.h"
#include "cli/catalogue.h"
#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/common/progress.h"
#include "cli/run_output.h"
#include "cli/run_parallel.h"

namespace rp::cli {

using namespace rp::cases;
namespace {

constexpr const char* kDescription =
    "Run the cases on the running kernel. Each variant runs in a network namespace of its own, with its\n"
    "own timeout; sysctls it sets are per namespace and die with it. Prints one row per case x variant x\n"
    "repeat (expected, observed, verdict) and a summary. Variants run -j at a time (default: the CPUs\n"
    "this process may use); a case that needs the machine to itself runs alone, after the others.";

constexpr const char* kFooter = R"(Files (--json PATH):
  PATH.jsonl  every record, one JSON line each, written the moment it exists.
  PATH        the document (schema reuseport-check/results/1): rewritten at the start, at
              most every 10 s and at the end; "complete": false until the run ends.
  A killed run keeps what it finished; `--resume PATH` (or PATH.jsonl) runs the rest.
  --resume keeps the records of FILE (same kernel; give the same --case and --repeat)
  and runs only the missing case x variant x repeat; without --json it goes on writing
  into FILE's pair of files.

Parallel runs (-j N, N > 1): N worker processes take the next variant not yet taken; the
records, the table and the files are in catalogue order as with -j 1, whatever order the
variants finished in. Cases declared to run alone (CPU pinning, rates) run after the
others, one variant at a time. -j 1 runs everything in this process, one after another.

Exit status: 0 when every row is PASS, XFAIL or SKIP; 1 on any FAIL, XPASS or ERROR; 2 on
bad usage, an output that cannot be written, or missing privileges.

Environment:
  RP_EXPECTATIONS=PATH  Judge against this expectations file instead of the built-in one.

Examples:
  reuseport-check run
  reuseport-check run -j 1 --json serial.json
  reuseport-check run --case 'close_*' --repeat 20 --json results.json
  reuseport-check run --case 'close_*' --repeat 20 --resume results.json
  reuseport-check run --case 'close_listener_with_queued_children/tcp6_*_migrate1'
  reuseport-check list

Running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (network namespaces, sysctls).
)";

struct Options {
  std::vector<std::string> globs;
  int repeat = 1;
  int jobs = 0;  // 0: default_jobs()
  std::string json_path, resume;
  bool verbose = false;
};

double mono_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

const char* color(Verdict v) {
  switch (v) {
    case Verdict::Pass: return "\033[32m";
    case Verdict::Xfail:
    case Verdict::Skip: return "\033[33m";
    default: return "\033[1;31m";
  }
}

// The counts the expectation names, as observed; "name=observed!=expected" where they
// differ, "name=?" where the kernel could not observe it.
std::string compact(const nlohmann::json& expected, const nlohmann::json& observed) {
  std::string s;
  for (auto& [k, want] : expected.items()) {
    const nlohmann::json got = observed.contains(k) ? observed[k] : nlohmann::json();
    s += (s.empty() ? "" : " ") + k + "=" + (got.is_null() ? "?" : got.dump());
    if (got.is_null()) continue;
    if (want.is_object()) {  // bounds
      if (want.contains("min") && want["min"].is_number() && got.is_number() && got < want["min"])
        s += "<" + want["min"].dump();
      if (want.contains("max") && want["max"].is_number() && got.is_number() && got > want["max"])
        s += ">" + want["max"].dump();
    } else if (got != want) {
      s += "!=" + want.dump();
    }
  }
  return s;
}

// The console while cases run: a line per finished variant that stays, and a status line
// ("[n/N] case/variant, elapsed, counts") updated as each variant starts and ends (rp::cli::
// Progress rewrites it on a terminal and logs it at most every 10 s otherwise). Updated on
// events only: a ticking thread would share stdio and locks with the forked case children.
class Console {
 public:
  Console(size_t to_run) : to_run_(to_run), t0_(mono_s()) {}
  void starting(const std::string& case_name, const std::string& variant) {
    ++n_;
    current_ = case_name + "/" + variant;
    show();
  }
  void finished(const Record& r) {
    ++counts_[r.verdict];
    ++done_;
    char head[64];
    std::snprintf(head, sizeof head, "%-5s", to_string(r.verdict));
    std::string line = progress_.tty() ? std::string(color(r.verdict)) + head + "\033[0m" : head;
    char rest[64];
    std::snprintf(rest, sizeof rest, " [%zu/%zu] ", done_, to_run_);
    std::snprintf(head, sizeof head, " (%.1fs)", r.duration_s);
    line += rest + r.case_name + "/" + r.variant + head;
    if (is_failure(r.verdict) || r.verdict == Verdict::Xfail || r.verdict == Verdict::Skip)
      line += "\n      " + r.reason;
    progress_.line(line);
    show();
  }
  void done() { progress_.finish(); }

 private:
  void show() {
    const long s = static_cast<long>(mono_s() - t0_);
    char head[96];
    std::snprintf(head, sizeof head, "[%zu/%zu] %ld:%02ld ", n_, to_run_, s / 60, s % 60);
    std::string counts;
    for (Verdict v : {Verdict::Pass, Verdict::Fail, Verdict::Xfail, Verdict::Xpass, Verdict::Skip, Verdict::Error})
      if (counts_[v]) counts += (counts.empty() ? "" : " ") + std::to_string(counts_[v]) + " " + to_string(v);
    progress_.status(head + (counts.empty() ? "" : counts + " ") + "| " + current_);
  }
  // A status line rewritten in place needs a terminal that understands it: the matrix's
  // guests run with stdout on a serial port and TERM=dumb, and parse the lines that stay.
  static bool smart_terminal() {
    const char* term = getenv("TERM");
    return isatty(fileno(stdout)) == 1 && term && *term && std::string(term) != "dumb";
  }
  rp::cli::Progress progress_{stdout, smart_terminal(), 10.0};
  size_t to_run_, n_ = 0, done_ = 0;  // started, finished (the same with -j 1)
  double t0_;
  std::string current_;
  std::map<Verdict, size_t> counts_;
};

// GoogleTest's side: which repeat is running, and failures outside run_case's records.
class Listener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestIterationStart(const ::testing::UnitTest&, int iteration) override { set_current_repeat(iteration); }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    // Failures reported by run_case come as records; anything else (an assertion outside
    // it) is printed here so it is never lost.
    if (r.failed() && !in_record_) std::fprintf(stderr, "%s:%d: %s\n", r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo&) override { in_record_ = false; }
  void record_seen() { in_record_ = true; }

 private:
  bool in_record_ = false;
};

void print_table(std::vector<Record> records, const Options& o) {
  std::map<Verdict, int> totals;
  size_t wcase = 4, wobs = 8;
  for (const auto& r : records) {
    wcase = std::max(wcase, r.case_name.size() + 1 + r.variant.size());
    wobs = std::max(wobs, compact(r.expected, r.observed).size());
  }
  std::printf("\n%-*s  %-7s  %-*s\n", static_cast<int>(wcase), "case/variant", "verdict", static_cast<int>(wobs),
              "observed (!=X, <min, >max where it differs; ? not observable)");
  for (const auto& r : records) {
    std::string cv = r.case_name + "/" + r.variant;
    std::string obs = r.verdict == Verdict::Skip ? "skipped: " + r.reason : compact(r.expected, r.observed);
    if (o.repeat > 1) cv += " #" + std::to_string(r.repeat);
    std::printf("%-*s  %-7s  %s\n", static_cast<int>(wcase), cv.c_str(), to_string(r.verdict), obs.c_str());
    if (o.verbose) std::printf("    observed %s\n", r.observed.dump().c_str());
  }
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--case", o.globs,
                 "Select cases by name ('close_*'), or variants as CASE/VARIANT "
                 "('close_listener_with_queued_children/*migrate1'). Repeatable.")
      ->type_name("GLOB")
      ->allow_extra_args(false);
  app.add_option("--repeat", o.repeat, "Run the selection N times (default 1).")
      ->type_name("N")
      ->check(CLI::Range(1, 100000));
  app.add_option("--json", o.json_path,
                 "Write every record (case, variant, kernel, expected, observed counts, verdict, reason, source) "
                 "to PATH.jsonl as it comes and the document to PATH.")
      ->type_name("PATH");
  app.add_option("--resume", o.resume,
                 "Keep the records of an earlier run's PATH or PATH.jsonl and run only the missing ones.")
      ->type_name("FILE");
  app.add_option("-j,--jobs", o.jobs,
                 "Run N variants at a time, each in its own network namespace (default: 4 per CPU this "
                 "process may run on, at most 64: variants mostly wait on the kernel's timers; 1: one "
                 "after another).")
      ->type_name("N")
      ->check(CLI::Range(1, 1024));
  app.add_flag("--verbose", o.verbose, "Also print each record's observed counts in full.");
}

}  // namespace

int run_command(const std::vector<std::string>& args, const std::vector<std::string>& argv) {
  Options o;
  auto app = rp::cli::make_app("run", kDescription, kFooter);
  add_options(*app, o);
  if (auto rc = rp::cli::parse(*app, args)) return *rc;

  std::vector<CaseId> chosen;
  for (const auto& id : registered())
    if (selected(id, o.globs)) chosen.push_back(id);
  if (chosen.empty()) {
    print_known(o.globs);
    return 2;
  }
  std::map<std::string, size_t> order;  // "case/variant" -> position in the run
  for (size_t i = 0; i < chosen.size(); ++i) order[chosen[i].case_name + "/" + chosen[i].variant] = i;

  // Everything that can refuse the run does so before the first case: the earlier run's
  // records, the output paths, the privileges, the expectations.
  const std::string kernel = kernel_release();
  std::optional<Resumed> resumed;
  try {
    if (!o.resume.empty()) {
      resumed = load_resumed(o.resume);
      reconcile(*resumed, order, o.repeat, kernel);
      if (o.json_path.empty()) o.json_path = resumed->default_json;
    }
  } catch (const std::invalid_argument& e) {
    return rp::cli::usage_error(e.what());
  }
  try {
    if (!o.json_path.empty()) {
      rp::cli::check_writable(o.json_path);
      rp::cli::check_writable(journal_path(o.json_path));
    }
  } catch (const rp::cli::OutputError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  std::string missing;
  if (!rp::cli::has_privileges(missing)) {
    std::fprintf(stderr,
                 "reuseport-check: running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (missing:%s).\n"
                 "Run it as root.\n",
                 missing.c_str());
    return 2;
  }
  try {
    expectations();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }

  std::vector<Record> records;
  std::set<std::tuple<std::string, std::string, int>> kept;
  if (resumed)
    for (const auto& k : resumed->records) {
      records.push_back(k.record);
      kept.insert({k.record.case_name, k.record.variant, k.record.repeat});
    }
  const size_t total = chosen.size() * static_cast<size_t>(o.repeat);

  std::unique_ptr<RunOutput> out;
  std::string write_error;  // set once the records can no longer be saved: the run stops
  if (!o.json_path.empty()) {
    utsname u{};
    uname(&u);
    nlohmann::json header = {{"schema", "reuseport-check/results/1"},
                             {"tool", "reuseport-check"},
                             {"kernel", kernel},
                             {"machine", u.machine},
                             {"started_at", rp::cli::now_iso()},
                             {"command", argv},
                             {"expectations", expectations_origin()},
                             {"journal", journal_path(o.json_path)},
                             {"resumed_from", nullptr}};
    if (resumed) header["resumed_from"] = {{"file", resumed->file}, {"records", resumed->records.size()}};
    out = std::make_unique<RunOutput>(o.json_path, header, order);
    try {
      out->start(resumed ? &*resumed : nullptr);
    } catch (const rp::cli::OutputError& e) {
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      return 2;
    }
  }

  std::string filter;
  for (const auto& id : chosen) filter += (filter.empty() ? "" : ":") + id.full;
  ::testing::GTEST_FLAG(filter) = filter;
  ::testing::GTEST_FLAG(repeat) = o.repeat;
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  auto* listener = new Listener;
  listeners.Append(listener);

  if (o.jobs == 0) o.jobs = default_jobs();
  std::printf("reuseport-check: %zu variant(s) x %d repeat(s) on kernel %s\n", chosen.size(), o.repeat,
              kernel.c_str());
  if (o.jobs > 1) {
    const auto alone = std::count_if(chosen.begin(), chosen.end(), [](const CaseId& id) { return runs_alone(id.case_name); });
    std::printf("reuseport-check: %d at a time; %ld variant(s) of cases that run alone after them\n", o.jobs,
                static_cast<long>(alone));
  }
  if (resumed)
    std::printf("reuseport-check: resuming %s: %zu record(s) kept%s, %zu to run\n", resumed->file.c_str(),
                kept.size(), resumed->torn ? " (a torn last line skipped)" : "", total - kept.size());
  if (out) std::printf("reuseport-check: records go to %s as they come\n", out->journal().c_str());
  std::fflush(stdout);

  Console console(total - kept.size());
  // What becomes of a record, wherever it ran; false once records can no longer be saved.
  auto accept = [&](const Record& r) {
    records.push_back(r);
    console.finished(r);
    if (!out || !write_error.empty()) return write_error.empty();
    try {
      out->add(r.to_json());
    } catch (const rp::cli::OutputError& e) {
      write_error = e.what();
      std::fprintf(stderr, "reuseport-check: %s; no further case runs\n", e.what());
    }
    return write_error.empty();
  };
  auto is_kept = [&](const std::string& c, const std::string& v, int repeat) {
    return kept.count({c, v, repeat}) > 0;
  };
  int gtest_rc = 0;
  std::string worker_problems;
  if (o.jobs == 1) {
    set_planner([&](const std::string& c, const std::string& v, int repeat) {
      if (is_kept(c, v, repeat)) return Plan::Keep;
      if (!write_error.empty()) return Plan::Drop;
      console.starting(c, v);
      return Plan::Run;
    });
    set_record_sink([&](const Record& r) {
      listener->record_seen();
      accept(r);
    });
    gtest_rc = RUN_ALL_TESTS();
    set_planner(nullptr);
    set_record_sink(nullptr);
  } else {
    ParallelRun pr;
    for (const auto& id : chosen) pr.items.push_back({id.full, id.case_name, id.variant, runs_alone(id.case_name)});
    pr.repeat = o.repeat;
    pr.jobs = o.jobs;
    pr.kept = is_kept;
    pr.starting = [&](const std::string& c, const std::string& v) { console.starting(c, v); };
    pr.finished = accept;
    pr.record_seen_in_worker = [listener] { listener->record_seen(); };
    try {
      worker_problems = run_parallel(pr);
    } catch (const std::runtime_error& e) {
      worker_problems = e.what();
    }
  }
  console.done();

  // A resumed run's table reads like an uninterrupted one: repeat by repeat, catalogue order.
  std::stable_sort(records.begin(), records.end(), [&](const Record& a, const Record& b) {
    return std::make_pair(a.repeat, order[a.case_name + "/" + a.variant]) <
           std::make_pair(b.repeat, order[b.case_name + "/" + b.variant]);
  });
  print_table(records, o);
  std::map<Verdict, int> totals;
  for (const auto& r : records) ++totals[r.verdict];
  std::printf("\nsummary: %d passed, %d failed, %d xfail, %d xpass, %d skipped, %d errors (kernel %s)\n",
              totals[Verdict::Pass], totals[Verdict::Fail], totals[Verdict::Xfail], totals[Verdict::Xpass],
              totals[Verdict::Skip], totals[Verdict::Error], kernel.c_str());
  bool failed = totals[Verdict::Fail] || totals[Verdict::Xpass] || totals[Verdict::Error];
  if (records.size() != total && write_error.empty()) {
    std::printf("reuseport-check: %zu record(s) for %zu run(s): a case ended without a verdict\n", records.size(),
                total);
    failed = true;
  }
  if (gtest_rc != 0 && !failed) failed = true;
  if (!worker_problems.empty()) {
    std::printf("reuseport-check: %s\n", worker_problems.c_str());
    failed = true;
  }

  if (out && write_error.empty()) {
    try {
      out->finish();
      std::printf("records written to %s\n", o.json_path.c_str());
    } catch (const rp::cli::OutputError& e) {
      write_error = e.what();
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    }
  }
  if (!write_error.empty()) return 2;
  return failed ? 1 : 0;
}

}  // namespace rp::cli
