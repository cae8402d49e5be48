// One JUnit XML writer for every subcommand that reports to CI (deploy, matrix): the
// dialect Jenkins, GitLab and GitHub test reporters read (testsuites > testsuite >
// testcase, with failure, error or skipped).
#pragma once

#include <string>
#include <vector>

namespace rp::cli {

struct JUnitCase {
  enum class Kind { Pass, Failure, Error, Skipped };
  std::string classname, name;
  double time_s = 0;
  Kind kind = Kind::Pass;
  std::string message;     // the one line CI shows
  std::string body;        // details under it
  std::string system_out;  // anything else worth keeping
};

struct JUnitSuite {
  std::string name;
  double time_s = 0;
  std::vector<JUnitCase> cases;
};

// The document; control characters XML 1.0 cannot hold become spaces.
std::string junit_xml(const std::vector<JUnitSuite>& suites);

// Written atomically (cli/common/output.h); throws OutputError.
void write_junit(const std::string& path, const std::vector<JUnitSuite>& suites);

}  // namespace rp::cli
