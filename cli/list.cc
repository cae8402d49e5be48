// `reuseport-check list`: name the cases and their variants; and the selection by --case
// that `run` shares.

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cases/lib/expectations.h"
#include "cli/catalogue.h"
#include "cli/commands.h"
#include "cli/common/options.h"

namespace rp::cli {

using namespace rp::cases;

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

void print_known(const std::vector<std::string>& globs) {
  std::set<std::string> cases;
  for (const auto& id : registered()) cases.insert(id.case_name);
  std::fprintf(stderr, "reuseport-check: no case matches");
  for (const auto& g : globs) std::fprintf(stderr, " '%s'", g.c_str());
  std::fprintf(stderr, "\nknown cases:\n");
  for (const auto& c : cases) std::fprintf(stderr, "  %s\n", c.c_str());
}

int list_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  auto app = rp::cli::make_app("list", "Print the cases and their variants.",
                               "Examples:\n"
                               "  reuseport-check list\n"
                               "  reuseport-check list --case 'close_*'\n"
                               "\nExit status: 0; 2 on bad usage or when no case matches.\n");
  std::vector<std::string> globs;
  app->add_option("--case", globs,
                  "Select cases by name ('close_*'), or variants as CASE/VARIANT "
                  "('close_listener_with_queued_children/*migrate1'). Repeatable.")
      ->type_name("GLOB")
      ->allow_extra_args(false);
  if (auto rc = rp::cli::parse(*app, args)) return *rc;

  std::map<std::string, std::vector<std::string>> by_case;
  for (const auto& id : registered())
    if (selected(id, globs)) by_case[id.case_name].push_back(id.variant);
  if (by_case.empty()) {
    print_known(globs);
    return 2;
  }
  for (const auto& [c, vs] : by_case) {
    std::printf("%s (%zu variants)\n", c.c_str(), vs.size());
    for (const auto& v : vs) std::printf("  %s\n", v.c_str());
  }
  return 0;
}

}  // namespace rp::cli
