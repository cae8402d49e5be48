// `reuseport-check run` and `reuseport-check list`: execute the conformance cases on the
// running kernel (each variant isolated in its own network namespace) and print what was
// expected, what was observed and the verdict; name the cases and their variants.

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cases/lib/expectations.h"
#include "cases/lib/kernel.h"
#include "cases/lib/record.h"
#include "cli/commands.h"

namespace rp::cases {
namespace {

constexpr const char* kRunUsage = R"USAGE(Usage:
  reuseport-check run [--case GLOB]... [--repeat N] [--json PATH] [--verbose]
  reuseport-check list [--case GLOB]...

  run    Run the cases on the running kernel. Each variant runs in a network namespace of
         its own, with its own timeout; sysctls it sets are per namespace and die with it.
         Prints one row per case x variant x repeat (expected, observed, verdict) and a
         summary. Exit status: 0 when every row is PASS, XFAIL or SKIP; 1 on any FAIL,
         XPASS or ERROR; 2 on bad usage or missing privileges.
  list   Print the cases and their variants.

Options:
  --case GLOB   Select cases by name ('close_*'), or variants as CASE/VARIANT
                ('close_listener_with_queued_children/*migrate1'). Repeatable.
  --repeat N    Run the selection N times (default 1).
  --json PATH   Write every record (case, variant, kernel, expected, observed counts,
                verdict, reason, source) as JSON to PATH.
  --verbose     Also print each record's observed counts in full.

Environment:
  RP_EXPECTATIONS=PATH  Judge against this expectations file instead of the built-in one.

Examples:
  sudo reuseport-check run
  sudo reuseport-check run --case 'close_*' --repeat 20 --json results.json
  sudo reuseport-check run --case 'close_listener_with_queued_children/tcp6_*_migrate1'
  reuseport-check list

Running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (network namespaces, sysctls).
)USAGE";

struct CaseId {
  std::string case_name, variant, full;  // full: the GoogleTest name
};

std::vector<CaseId> registered() {
  std::vector<CaseId> out;
  auto* ut = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < ut->total_test_suite_count(); ++i) {
    const auto* suite = ut->GetTestSuite(i);
    std::string s = suite->name();
    std::string c = s.substr(s.rfind('/') == std::string::npos ? 0 : s.rfind('/') + 1);
    for (int j = 0; j < suite->total_test_count(); ++j) {
      std::string t = suite->GetTestInfo(j)->name();
      std::string v = t.substr(t.rfind('/') == std::string::npos ? 0 : t.rfind('/') + 1);
      out.push_back({c, v, s + "." + t});
    }
  }
  return out;
}

bool selected(const CaseId& id, const std::vector<std::string>& globs) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (g.find('/') != std::string::npos ? glob_match(g, id.case_name + "/" + id.variant) : glob_match(g, id.case_name))
      return true;
  }
  return false;
}

std::string now_iso() {
  char buf[64];
  time_t t = time(nullptr);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  return buf;
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

class Progress : public ::testing::EmptyTestEventListener {
 public:
  explicit Progress(size_t total, bool tty) : total_(total), tty_(tty) {}
  void OnTestIterationStart(const ::testing::UnitTest&, int iteration) override { set_current_repeat(iteration); }
  void OnTestStart(const ::testing::TestInfo&) override { ++n_; }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    // Failures reported by run_case come as records; anything else (an assertion outside
    // it) is printed here so it is never lost.
    if (r.failed() && !in_record_) std::fprintf(stderr, "%s:%d: %s\n", r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
  void record(const Record& r) {
    const bool bad = is_failure(r.verdict);
    if (tty_) std::printf("%s%-5s\033[0m", color(r.verdict), to_string(r.verdict));
    else std::printf("%-5s", to_string(r.verdict));
    std::printf(" [%zu/%zu] %s/%s (%.1fs)\n", n_, total_, r.case_name.c_str(), r.variant.c_str(), r.duration_s);
    if (bad || r.verdict == Verdict::Xfail || r.verdict == Verdict::Skip) std::printf("      %s\n", r.reason.c_str());
    std::fflush(stdout);
    in_record_ = true;
  }
  void OnTestEnd(const ::testing::TestInfo&) override { in_record_ = false; }

 private:
  size_t total_, n_ = 0;
  bool tty_;
  bool in_record_ = false;
};

int cmd_list(const std::vector<std::string>& globs) {
  auto ids = registered();
  std::map<std::string, std::vector<std::string>> by_case;
  for (const auto& id : ids)
    if (selected(id, globs)) by_case[id.case_name].push_back(id.variant);
  if (by_case.empty()) return -1;
  for (const auto& [c, vs] : by_case) {
    std::printf("%s (%zu variants)\n", c.c_str(), vs.size());
    for (const auto& v : vs) std::printf("  %s\n", v.c_str());
  }
  return 0;
}

void print_known(const std::vector<std::string>& globs) {
  std::set<std::string> cases;
  for (const auto& id : registered()) cases.insert(id.case_name);
  std::fprintf(stderr, "reuseport-check: no case matches");
  for (const auto& g : globs) std::fprintf(stderr, " '%s'", g.c_str());
  std::fprintf(stderr, "\nknown cases:\n");
  for (const auto& c : cases) std::fprintf(stderr, "  %s\n", c.c_str());
}

int cmd_run(const std::vector<std::string>& globs, int repeat, const std::string& json_path, bool verbose,
            const std::vector<std::string>& argv_all) {
  std::vector<CaseId> chosen;
  for (const auto& id : registered())
    if (selected(id, globs)) chosen.push_back(id);
  if (chosen.empty()) {
    print_known(globs);
    return 2;
  }
  std::string missing;
  if (!has_privileges(missing)) {
    std::fprintf(stderr,
                 "reuseport-check: running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (missing:%s).\n"
                 "Try: sudo reuseport-check run\n",
                 missing.c_str());
    return 2;
  }
  try {
    expectations();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }

  std::string filter;
  for (const auto& id : chosen) filter += (filter.empty() ? "" : ":") + id.full;
  ::testing::GTEST_FLAG(filter) = filter;
  ::testing::GTEST_FLAG(repeat) = repeat;
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  auto* progress = new Progress(chosen.size() * static_cast<size_t>(repeat), isatty(1));
  listeners.Append(progress);

  std::vector<Record> records;
  set_record_sink([&](const Record& r) {
    records.push_back(r);
    progress->record(r);
  });
  std::printf("reuseport-check: %zu variant(s) x %d repeat(s) on kernel %s\n", chosen.size(), repeat,
              kernel_release().c_str());
  const int gtest_rc = RUN_ALL_TESTS();

  // The table.
  std::map<Verdict, int> totals;
  size_t wcase = 4, wobs = 8;
  for (const auto& r : records) {
    wcase = std::max(wcase, r.case_name.size() + 1 + r.variant.size());
    wobs = std::max(wobs, compact(r.expected, r.observed).size());
  }
  std::printf("\n%-*s  %-7s  %-*s\n", static_cast<int>(wcase), "case/variant", "verdict", static_cast<int>(wobs),
              "observed (!=X, <min, >max where it differs; ? not observable)");
  for (const auto& r : records) {
    ++totals[r.verdict];
    std::string cv = r.case_name + "/" + r.variant;
    std::string obs = r.verdict == Verdict::Skip ? "skipped: " + r.reason : compact(r.expected, r.observed);
    if (repeat > 1) cv += " #" + std::to_string(r.repeat);
    std::printf("%-*s  %-7s  %s\n", static_cast<int>(wcase), cv.c_str(), to_string(r.verdict), obs.c_str());
    if (verbose) std::printf("    observed %s\n", r.observed.dump().c_str());
  }
  const size_t expected_records = chosen.size() * static_cast<size_t>(repeat);
  std::printf("\nsummary: %d passed, %d failed, %d xfail, %d xpass, %d skipped, %d errors (kernel %s)\n",
              totals[Verdict::Pass], totals[Verdict::Fail], totals[Verdict::Xfail], totals[Verdict::Xpass],
              totals[Verdict::Skip], totals[Verdict::Error], kernel_release().c_str());
  bool failed = totals[Verdict::Fail] || totals[Verdict::Xpass] || totals[Verdict::Error];
  if (records.size() != expected_records) {
    std::printf("reuseport-check: %zu record(s) for %zu run(s): a case ended without a verdict\n", records.size(),
                expected_records);
    failed = true;
  }
  if (gtest_rc != 0 && !failed) failed = true;

  if (!json_path.empty()) {
    utsname u{};
    uname(&u);
    nlohmann::json out = {{"schema", "reuseport-check/results/1"},
                          {"tool", "reuseport-check"},
                          {"kernel", kernel_release()},
                          {"machine", u.machine},
                          {"finished_at", now_iso()},
                          {"command", argv_all},
                          {"expectations", expectations_origin()},
                          {"records", nlohmann::json::array()}};
    for (const auto& r : records) out["records"].push_back(r.to_json());
    std::ofstream f(json_path);
    if (!f) {
      std::fprintf(stderr, "reuseport-check: cannot write %s: %s\n", json_path.c_str(), std::strerror(errno));
      return 2;
    }
    f << out.dump(2) << "\n";
    std::printf("records written to %s\n", json_path.c_str());
  }
  return failed ? 1 : 0;
}

}  // namespace

bool has_privileges(std::string& missing) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (syscall(SYS_capget, &h, d) != 0) {
    missing = "capget failed";
    return false;
  }
  auto has = [&](int cap) { return (d[cap / 32].effective >> (cap % 32)) & 1; };
  if (!has(CAP_NET_ADMIN)) missing += " CAP_NET_ADMIN";
  if (!has(CAP_SYS_ADMIN)) missing += " CAP_SYS_ADMIN";
  return missing.empty();
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "reuseport-check: %s\nRun 'reuseport-check --help' for usage.\n", msg.c_str());
  return 2;
}

int run_command(const std::vector<std::string>& args, const std::vector<std::string>& all) {
  const std::string cmd = args[0];
  std::vector<std::string> globs;
  int repeat = 1;
  std::string json_path;
  bool verbose = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= args.size()) throw std::invalid_argument(std::string(name) + " needs a value");
      return args[++i];
    };
    try {
      if (a == "--help" || a == "-h") {
        std::fputs(kRunUsage, stdout);
        return 0;
      } else if (a == "--case") {
        globs.push_back(value("--case"));
      } else if (a.rfind("--case=", 0) == 0) {
        globs.push_back(a.substr(7));
      } else if (cmd == "run" && (a == "--repeat" || a.rfind("--repeat=", 0) == 0)) {
        std::string v = a == "--repeat" ? value("--repeat") : a.substr(9);
        size_t pos = 0;
        repeat = std::stoi(v, &pos);
        if (pos != v.size() || repeat < 1) throw std::invalid_argument("--repeat needs a positive integer, got '" + v + "'");
      } else if (cmd == "run" && a == "--json") {
        json_path = value("--json");
      } else if (cmd == "run" && a.rfind("--json=", 0) == 0) {
        json_path = a.substr(7);
      } else if (cmd == "run" && a == "--verbose") {
        verbose = true;
      } else {
        return usage_error("unknown option '" + a + "' for '" + cmd + "'");
      }
    } catch (const std::invalid_argument& e) {
      return usage_error(e.what());
    } catch (const std::out_of_range&) {
      return usage_error("--repeat is out of range");
    }
  }
  if (cmd == "list") {
    int rc = cmd_list(globs);
    if (rc < 0) {
      print_known(globs);
      return 2;
    }
    return rc;
  }
  return cmd_run(globs, repeat, json_path, verbose, all);
}

}  // namespace rp::cases
