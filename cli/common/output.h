// Writing results so that nothing measured is lost: output paths are checked before any
// work starts, every record is appended to a JSON Lines journal as soon as it exists (one
// write(2) per line, flushed), and summary documents replace the old file atomically. A
// SIGKILL, a crash or a full disk costs at most the record in flight.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace rp::cli {

// "cannot write PATH: why". Subcommands turn it into exit status 2.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Before any work: can `path` be written? Its directory must exist and take a new file (one
// is created there and removed, which catches read-only mounts and missing permissions even
// for root), and the path itself must not be a directory or an unwritable file. Nothing
// existing is truncated. Throws OutputError.
void check_writable(const std::string& path);

// The same for a directory the command fills: it is created (with its parents) if missing.
void check_writable_dir(const std::string& dir);

// Replaces `path` with `text` atomically: written to a temporary file beside it, fsynced,
// renamed over it. Readers see the old document or the new one, never half of one.
void write_atomic(const std::string& path, const std::string& text);

// A summary document rewritten as a run goes (write_atomic each time). A failure (a full
// disk) is said on stderr once, not at every rewrite, and again for the final document;
// the next rewrite tries again. write() returns whether this one reached the disk.
class RewrittenDocument {
 public:
  explicit RewrittenDocument(std::string path) : path_(std::move(path)) {}
  bool write(const std::string& text, bool final);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool failing_ = false;
};

// An append-only JSON Lines file. Each append() is one line, written with one write(2) and
// fdatasync()ed, so a killed process leaves whole lines and at most one torn last line.
class JsonLines {
 public:
  // truncate: start a new journal; otherwise append to what is there.
  JsonLines(const std::string& path, bool truncate);
  ~JsonLines();
  JsonLines(const JsonLines&) = delete;
  JsonLines& operator=(const JsonLines&) = delete;

  void append(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The whole lines of a JSON Lines file; a torn last line (the write a crash interrupted) is
// skipped and counted in `torn`. Throws OutputError when the file cannot be read or a line
// before the last is not JSON.
std::vector<nlohmann::json> read_json_lines(const std::string& path, size_t* torn = nullptr);

// UTC now as 2026-11-30T10:51:55Z.
std::string now_iso();

}  // namespace rp::cli
