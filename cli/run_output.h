// Where `run --json PATH` keeps its records so that a killed run loses at most the one in
// flight: every record is appended to the journal PATH.jsonl the moment it exists (one
// line, one write, fdatasync), and the document PATH (schema reuseport-check/results/1) is
// rewritten atomically at the start, at most every 10 s and at the end, with "complete"
// saying whether the run got there. `run --resume FILE` reads either file back.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cases/lib/record.h"

namespace rp::cli {
class JsonLines;
}

namespace rp::cli {

// PATH.jsonl: beside the document, named after it, so that one option names both, the
// document keeps the name its readers know, and no --json value can make the two collide.
std::string journal_path(const std::string& doc_path);

// The records an earlier run left, read from its journal or its document (and then also
// from the journal beside the document, which may hold the records of the last 10 s).
struct Resumed {
  std::string file;          // as given to --resume
  std::string default_json;  // where the run goes on writing when --json is not given
  std::string journal;       // the journal that was read ("" if none)
  size_t torn = 0;           // torn last lines skipped (a write a kill interrupted)
  struct Kept {
    nlohmann::json json;     // as read, copied verbatim into the new output
    rp::cases::Record record;
    bool in_journal = false;
  };
  std::vector<Kept> records;  // one per case x variant x repeat, first occurrence wins
};

// Throws std::invalid_argument with a one-line reason when FILE cannot be read or is not
// the output of `run`.
Resumed load_resumed(const std::string& file);

// Refuses (std::invalid_argument, one line) records this run cannot count as its own: from
// another kernel release, of a case x variant outside the selection (`order` maps
// "case/variant" to its position in the run), or of a repeat >= `repeat`.
void reconcile(const Resumed& r, const std::map<std::string, size_t>& order, int repeat, const std::string& kernel);

class RunOutput {
 public:
  // `header`: the document's fields but "records", "complete", "finished_at".
  RunOutput(std::string doc_path, nlohmann::json header, std::map<std::string, size_t> order);
  ~RunOutput();

  // Opens the journal. With `resumed` whose journal is this run's journal, it is continued
  // (a torn last line cut off first); otherwise it is started afresh. Either way, the kept
  // records are in it before the document is first written. Throws rp::cli::OutputError.
  void start(const Resumed* resumed);
  // A new record: into the journal at once; the document when it is 10 s old.
  void add(const nlohmann::json& record);
  // The complete document.
  void finish();
  const std::string& doc_path() const { return doc_path_; }
  std::string journal() const { return journal_path(doc_path_); }

 private:
  void write_document(bool complete);
  std::string doc_path_;
  nlohmann::json header_;
  std::map<std::string, size_t> order_;
  std::vector<nlohmann::json> records_;
  std::unique_ptr<rp::cli::JsonLines> journal_;
  std::chrono::steady_clock::time_point last_doc_;
};

}  // namespace rp::cli
