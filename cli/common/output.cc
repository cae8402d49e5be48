#include "cli/common/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace rp::cli {
namespace {

std::string parent_of(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw OutputError("cannot write " + path + ": " + why);
}

void write_all(int fd, const std::string& text, const std::string& path) {
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

// Creates and removes a file in dir: the one check that a write will work there.
void probe_dir(const std::string& dir, const std::string& shown) {
  std::string tmpl = dir + "/.reuseport-check-probe.XXXXXX";
  int fd = mkstemp(tmpl.data());
  if (fd < 0) fail(shown, std::strerror(errno));
  ::close(fd);
  ::unlink(tmpl.c_str());
}

}  // namespace

void check_writable(const std::string& path) {
  if (path.empty()) fail("''", "empty path");
  struct stat st {};
  const std::string dir = parent_of(path);
  if (stat(dir.c_str(), &st) != 0) fail(path, "directory " + dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail(path, dir + " is not a directory");
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail(path, "is a directory");
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);  // no O_TRUNC: nothing is lost yet
    if (fd < 0) fail(path, std::strerror(errno));
    ::close(fd);
  }
  probe_dir(dir, path);
}

void check_writable_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir, ec.message());
  if (!std::filesystem::is_directory(dir, ec)) fail(dir, "not a directory");
  probe_dir(dir, dir);
}

void write_atomic(const std::string& path, const std::string& text) {
  std::string tmp = parent_of(path) + "/." + std::filesystem::path(path).filename().string() + ".XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) fail(path, std::strerror(errno));
  try {
    write_all(fd, text, path);
    if (fsync(fd) != 0) fail(path, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::fchmod(fd, 0644);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail(path, std::strerror(err));
  }
}

bool RewrittenDocument::write(const std::string& text, bool final) {
  try {
    write_atomic(path_, text);
    failing_ = false;
    return true;
  } catch (const OutputError& e) {
    if (!failing_ || final) std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    failing_ = true;
    return false;
  }
}

JsonLines::JsonLines(const std::string& path, bool truncate) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd_ < 0) fail(path, std::strerror(errno));
}

JsonLines::~JsonLines() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonLines::append(const nlohmann::json& record) {
  // O_APPEND and one write: a line is never interleaved with another, and a crash leaves at
  // most this one torn.
  write_all(fd_, record.dump() + "\n", path_);
  if (fdatasync(fd_) != 0) fail(path_, std::strerror(errno));
}

std::vector<nlohmann::json> read_json_lines(const std::string& path, size_t* torn) {
  std::ifstream f(path);
  if (!f) throw OutputError("cannot read " + path + ": " + std::strerror(errno));
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) lines.push_back(l);
  std::vector<nlohmann::json> out;
  if (torn) *torn = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      out.push_back(nlohmann::json::parse(lines[i]));
    } catch (const nlohmann::json::exception& e) {
      if (i + 1 == lines.size()) {
        if (torn) ++*torn;
        continue;
      }
      throw OutputError(path + ":" + std::to_string(i + 1) + ": not JSON (" + e.what() + ")");
    }
  }
  return out;
}

std::string now_iso() {
  char buf[64];
  time_t t = time(nullptr);
  tm g{};
  gmtime_r(&t, &g);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &g);
  return buf;
}

}  // namespace rp::cli
