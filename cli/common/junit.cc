#include "cli/common/junit.h"

#include <cstdio>
#include <sstream>

#include "cli/common/output.h"

namespace rp::cli {
namespace {

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') o += ' ';
        else o += ch;
    }
  }
  return o;
}

std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", s);
  return b;
}

}  // namespace

std::string junit_xml(const std::vector<JUnitSuite>& suites) {
  using K = JUnitCase::Kind;
  std::ostringstream x;
  size_t tests = 0, failures = 0, errors = 0, skipped = 0;
  double time = 0;
  for (const auto& s : suites) {
    time += s.time_s;
    for (const auto& c : s.cases) {
      ++tests;
      failures += c.kind == K::Failure;
      errors += c.kind == K::Error;
      skipped += c.kind == K::Skipped;
    }
  }
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<testsuites tests=\"" << tests << "\" failures=\"" << failures << "\" errors=\"" << errors
    << "\" skipped=\"" << skipped << "\" time=\"" << secs(time) << "\">\n";
  for (const auto& s : suites) {
    size_t f = 0, e = 0, k = 0;
    for (const auto& c : s.cases) {
      f += c.kind == K::Failure;
      e += c.kind == K::Error;
      k += c.kind == K::Skipped;
    }
    x << "  <testsuite name=\"" << esc(s.name) << "\" tests=\"" << s.cases.size() << "\" failures=\"" << f
      << "\" errors=\"" << e << "\" skipped=\"" << k << "\" time=\"" << secs(s.time_s) << "\">\n";
    for (const auto& c : s.cases) {
      x << "    <testcase classname=\"" << esc(c.classname) << "\" name=\"" << esc(c.name) << "\" time=\""
        << secs(c.time_s) << "\"";
      const char* tag = c.kind == K::Failure ? "failure" : c.kind == K::Error ? "error" : c.kind == K::Skipped ? "skipped" : nullptr;
      if (!tag && c.system_out.empty()) {
        x << "/>\n";
        continue;
      }
      x << ">\n";
      if (tag) x << "      <" << tag << " message=\"" << esc(c.message) << "\">" << esc(c.body) << "</" << tag << ">\n";
      if (!c.system_out.empty()) x << "      <system-out>" << esc(c.system_out) << "</system-out>\n";
      x << "    </testcase>\n";
    }
    x << "  </testsuite>\n";
  }
  x << "</testsuites>\n";
  return x.str();
}

void write_junit(const std::string& path, const std::vector<JUnitSuite>& suites) {
  write_atomic(path, junit_xml(suites));
}

}  // namespace rp::cli
