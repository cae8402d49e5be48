// The helpers every subcommand shares: output paths checked before work, atomic documents,
// JSON Lines that survive a torn write, JUnit, and option errors that name the option and
// the value.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli/common/junit.h"
#include "cli/common/options.h"
#include "cli/common/output.h"

namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/rp-cli-test.XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(path); }
};

TEST(CheckWritable, rejects_missing_directory_and_directories) {
  TempDir d;
  EXPECT_THROW(rp::cli::check_writable("/nonexistent/x.json"), rp::cli::OutputError);
  EXPECT_THROW(rp::cli::check_writable(d.path), rp::cli::OutputError);
  EXPECT_NO_THROW(rp::cli::check_writable(d.path + "/new.json"));
  EXPECT_FALSE(fs::exists(d.path + "/new.json"));  // a check leaves nothing behind
  EXPECT_TRUE(fs::is_empty(d.path));
  try {
    rp::cli::check_writable("/nonexistent/x.json");
  } catch (const rp::cli::OutputError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write /nonexistent/x.json"), std::string::npos) << e.what();
  }
}

TEST(CheckWritable, keeps_an_existing_file) {
  TempDir d;
  const std::string p = d.path + "/old.json";
  std::ofstream(p) << "keep";
  rp::cli::check_writable(p);
  std::ifstream f(p);
  std::string s;
  f >> s;
  EXPECT_EQ(s, "keep");
}

TEST(WriteAtomic, replaces_whole_documents) {
  TempDir d;
  const std::string p = d.path + "/doc.json";
  rp::cli::write_atomic(p, "one\n");
  rp::cli::write_atomic(p, "two\n");
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  EXPECT_EQ(s, "two");
  EXPECT_EQ(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()), 1);
}

TEST(RewrittenDocument, says_a_failure_once_and_again_at_the_end) {
  TempDir d;
  rp::cli::RewrittenDocument doc(d.path + "/gone/doc.json");  // a directory that is missing
  testing::internal::CaptureStderr();
  EXPECT_FALSE(doc.write("a", false));
  EXPECT_FALSE(doc.write("b", false));
  EXPECT_FALSE(doc.write("c", true));
  const std::string err = testing::internal::GetCapturedStderr();
  size_t lines = 0;
  for (size_t at = err.find("cannot write"); at != std::string::npos; at = err.find("cannot write", at + 1)) ++lines;
  EXPECT_EQ(lines, 2u) << err;
  fs::create_directory(d.path + "/gone");
  EXPECT_TRUE(doc.write("d", true));
  std::ifstream f(d.path + "/gone/doc.json");
  std::string s;
  f >> s;
  EXPECT_EQ(s, "d");
}

TEST(JsonLines, survives_a_torn_last_line) {
  TempDir d;
  const std::string p = d.path + "/r.jsonl";
  {
    rp::cli::JsonLines j(p, true);
    j.append({{"n", 1}});
    j.append({{"n", 2}});
  }
  {  // what a crash in the middle of a write leaves
    int fd = open(p.c_str(), O_WRONLY | O_APPEND);
    ASSERT_EQ(write(fd, "{\"n\": 3", 7), 7);
    close(fd);
  }
  size_t torn = 0;
  auto lines = rp::cli::read_json_lines(p, &torn);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["n"], 2);
  EXPECT_EQ(torn, 1u);
  {
    std::ofstream(p) << "{\"n\": 1\n{\"n\": 2}\n";  // damage before the last line is an error
  }
  EXPECT_THROW(rp::cli::read_json_lines(p), rp::cli::OutputError);
}

TEST(JUnit, counts_and_escapes) {
  using K = rp::cli::JUnitCase::Kind;
  rp::cli::JUnitSuite s{"reuseport-check deploy", 1.5, {}};
  s.cases.push_back({"reuseport-check", "ok", 0.1, K::Pass, "", "", ""});
  s.cases.push_back({"reuseport-check", "lost", 0.2, K::Failure, "3 > 0 <lost> & \"x\"", "a\x01" "b", ""});
  s.cases.push_back({"reuseport-check", "boot", 0.3, K::Error, "no boot", "", "log"});
  const std::string x = rp::cli::junit_xml({s});
  EXPECT_NE(x.find("<testsuites tests=\"3\" failures=\"1\" errors=\"1\" skipped=\"0\""), std::string::npos) << x;
  EXPECT_NE(x.find("3 &gt; 0 &lt;lost&gt; &amp; &quot;x&quot;"), std::string::npos) << x;
  EXPECT_NE(x.find("a b"), std::string::npos) << x;
  EXPECT_NE(x.find("<system-out>log</system-out>"), std::string::npos) << x;
}

int parse_with(std::vector<std::string> args, int* n = nullptr, double* secs = nullptr) {
  auto app = rp::cli::make_app("t", "test", "Examples: none");
  int v = 0;
  double s = 1;
  app->add_option("--n", v)->check(CLI::Range(1, 10));
  app->add_option("--s", s)->check(rp::cli::seconds());
  auto rc = rp::cli::parse(*app, args);
  if (n) *n = v;
  if (secs) *secs = s;
  return rc ? *rc : -1;
}

TEST(Options, both_spellings_and_errors_name_the_option) {
  int n = 0;
  double s = 0;
  EXPECT_EQ(parse_with({"t", "--n", "3", "--s=0.5"}, &n, &s), -1);
  EXPECT_EQ(n, 3);
  EXPECT_DOUBLE_EQ(s, 0.5);
  EXPECT_EQ(parse_with({"t", "--n=4"}, &n), -1);
  EXPECT_EQ(n, 4);
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse_with({"t", "--n", "abc"}), 2);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("--n"), std::string::npos) << err;
  EXPECT_NE(err.find("abc"), std::string::npos) << err;
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse_with({"t", "--s", "-1"}), 2);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("--s"), std::string::npos) << err;
  EXPECT_NE(err.find("-1"), std::string::npos) << err;
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse_with({"t", "--bogus"}), 2);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("--bogus"), std::string::npos) << err;
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse_with({"t", "--help"}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("Examples: none"), std::string::npos);
}

}  // namespace
