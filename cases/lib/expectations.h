// Expected semantics as data (cases/expectations.json): per case and variant, what the
// running kernel should do, gated by kernel version ranges and probed features, with the
// document or commit that says so. Kernel differences live here, not in `if`s in the cases.
#pragma once

#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cases/lib/kernel.h"

namespace rp::cases {

enum class Verdict { Pass, Fail, Xfail, Xpass, Skip, Error };
const char* to_string(Verdict v);
// Verdicts that make a run fail.
bool is_failure(Verdict v);

// ">=5.14", "<6.13", ">=5.14,<6.1", "" (any). Bounds are inclusive for >= and <=.
struct VersionRange {
  std::optional<KernelVersion> min, max;  // min inclusive, max exclusive
  std::string text;
  static VersionRange parse(const std::string& s);  // throws std::invalid_argument
  bool contains(const KernelVersion& k) const;
};

// What a kernel known to differ does instead: the documented expectation with these keys
// replaced. The verdict is XFAIL only when the observed counts match this outcome.
struct KnownDifference {
  std::string reason;      // what the kernel does and why
  nlohmann::json expect;   // key -> value or bound, overriding the entry's expect
  std::string evidence;    // the commit, report or committed result that shows it
};

struct Expectation {
  std::string variants = "*";  // glob over the variant name
  VersionRange kernel;
  std::vector<std::string> requires_;  // features
  // name -> literal, "$other" (another observed count) or {"min": .., "max": ..}. Every key
  // stated, and every count a "$ref" names, is required: null makes the verdict SKIP (the
  // kernel does not offer it) or ERROR (the tool or the case failed to read it).
  nlohmann::json expect;
  std::map<std::string, std::string> optional;       // key of expect -> why the semantics hold without it
  std::map<std::string, std::string> informational;  // observed key (or glob) not judged -> why
  std::optional<KnownDifference> xfail;
  std::optional<std::string> skip;  // not run; why
  std::string source;               // the document or commit that states the semantics
  std::string note;
};

// What applies to one case x variant on the running kernel.
struct Resolved {
  const Expectation* entry = nullptr;  // null: no entry applies
  std::optional<std::string> skip_reason;
};

struct Judgement {
  Verdict verdict = Verdict::Error;
  std::string reason;
  nlohmann::json expected;  // with "$x" references resolved to numbers
};

class Expectations {
 public:
  // Loads and validates; throws std::invalid_argument naming the file and entry for unknown
  // keys, malformed ranges, unknown features or a missing source.
  static Expectations load(const std::string& path);
  static Expectations parse(const nlohmann::json& j, const std::string& origin);

  Resolved resolve(const std::string& case_name, const std::string& variant, const KernelVersion& k) const;
  // PASS/FAIL against `expect`; XFAIL/XPASS/FAIL for an xfail entry (known outcome /
  // documented outcome / neither); SKIP or ERROR when a required count is null (see
  // Expectation::expect); ERROR for an observed count neither judged nor informational;
  // FAIL when the case's ledger does not reconcile (observed "ledger_mismatches").
  static Judgement judge(const Expectation& e, const nlohmann::json& observed);
  std::vector<std::string> case_names() const;

 private:
  std::map<std::string, std::vector<Expectation>> cases_;
};

// The expectations the cases use: the file named by $RP_EXPECTATIONS, else
// cases/expectations.json as compiled into the binary (so a binary copied into a VM carries
// its expectations). Loaded once.
const Expectations& expectations();
std::string expectations_origin();

bool glob_match(const std::string& pattern, const std::string& s);

}  // namespace rp::cases
