#include "cli/run_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "cli/common/output.h"

namespace rp::cli {

using namespace rp::cases;
namespace {

using nlohmann::json;
using Key = std::tuple<std::string, std::string, int>;  // case, variant, repeat

constexpr auto kDocumentEvery = std::chrono::seconds(10);

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void add_records(Resumed& r, std::set<Key>& seen, const std::vector<json>& records, bool in_journal,
                 const std::string& where) {
  for (size_t i = 0; i < records.size(); ++i) {
    Record rec;
    try {
      rec = Record::from_json(records[i]);
    } catch (const std::exception& e) {
      throw std::invalid_argument(where + ": record " + std::to_string(i + 1) + ": " + e.what());
    }
    if (!seen.insert({rec.case_name, rec.variant, rec.repeat}).second) continue;
    r.records.push_back({records[i], rec, in_journal});
  }
}

// Cuts a torn last line (no newline: the write a kill interrupted) off a journal before
// more lines follow it; glued to the next record it would spoil both.
void drop_torn_tail(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw rp::cli::OutputError("cannot write " + path + ": " + std::strerror(errno));
  off_t end = lseek(fd, 0, SEEK_END), keep = end;
  char c = 0;
  while (keep > 0 && pread(fd, &c, 1, keep - 1) == 1 && c != '\n') --keep;
  const int err = keep != end && ftruncate(fd, keep) != 0 ? errno : 0;
  ::close(fd);
  if (err) throw rp::cli::OutputError("cannot write " + path + ": " + std::strerror(err));
}

}  // namespace

std::string journal_path(const std::string& doc_path) { return doc_path + ".jsonl"; }

Resumed load_resumed(const std::string& file) {
  Resumed r;
  r.file = file;
  std::ifstream f(file);
  if (!f) throw std::invalid_argument("--resume: cannot read " + file + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  json doc;
  try {
    doc = json::parse(ss.str());
  } catch (const json::exception&) {
    doc = nullptr;  // several lines, or a torn one: a journal
  }
  std::set<Key> seen;
  if (doc.is_object() && doc.contains("records")) {  // the document
    if (!doc["records"].is_array()) throw std::invalid_argument("--resume: " + file + ": 'records' is not a list");
    r.default_json = file;
    const std::string j = journal_path(file);
    if (access(j.c_str(), F_OK) == 0) {
      try {
        add_records(r, seen, rp::cli::read_json_lines(j, &r.torn), true, j);
      } catch (const rp::cli::OutputError& e) {
        throw std::invalid_argument(std::string("--resume: ") + e.what());
      }
      r.journal = j;
    }
    add_records(r, seen, doc["records"].get<std::vector<json>>(), false, "--resume: " + file);
    return r;
  }
  try {
    add_records(r, seen, rp::cli::read_json_lines(file, &r.torn), true, "--resume: " + file);
  } catch (const rp::cli::OutputError& e) {
    throw std::invalid_argument(std::string("--resume: ") + e.what());
  }
  r.journal = file;
  r.default_json = ends_with(file, ".jsonl") ? file.substr(0, file.size() - 6) : file + ".json";
  return r;
}

void reconcile(const Resumed& r, const std::map<std::string, size_t>& order, int repeat, const std::string& kernel) {
  size_t other_kernel = 0, outside = 0, beyond = 0;
  std::string example_kernel, example_outside;
  int max_repeat = -1;
  for (const auto& k : r.records) {
    const Record& rec = k.record;
    if (rec.kernel != kernel) ++other_kernel, example_kernel = rec.kernel;
    if (!order.count(rec.case_name + "/" + rec.variant) && !outside++)
      example_outside = rec.case_name + "/" + rec.variant;
    if (rec.repeat >= repeat) ++beyond, max_repeat = std::max(max_repeat, rec.repeat);
  }
  const std::string head = "--resume " + r.file + ": ";
  if (other_kernel)
    throw std::invalid_argument(head + std::to_string(other_kernel) + " record(s) are from kernel " + example_kernel +
                                ", this is " + kernel + "; results of two kernels do not make one run");
  if (outside)
    throw std::invalid_argument(head + std::to_string(outside) + " record(s) are outside this selection (e.g. " +
                                example_outside + "); give the --case options of the run it continues");
  if (beyond)
    throw std::invalid_argument(head + "it has repeat #" + std::to_string(max_repeat) + " but --repeat is " +
                                std::to_string(repeat) + "; give --repeat " + std::to_string(max_repeat + 1) +
                                " or more");
}

RunOutput::RunOutput(std::string doc_path, json header, std::map<std::string, size_t> order)
    : doc_path_(std::move(doc_path)), header_(std::move(header)), order_(std::move(order)) {}

RunOutput::~RunOutput() = default;

void RunOutput::start(const Resumed* resumed) {
  const bool continue_journal = resumed && !resumed->journal.empty() && same_file(resumed->journal, journal());
  if (continue_journal) drop_torn_tail(journal());
  journal_ = std::make_unique<rp::cli::JsonLines>(journal(), !continue_journal);
  if (resumed) {
    for (const auto& k : resumed->records) {
      if (!continue_journal || !k.in_journal) journal_->append(k.json);
      records_.push_back(k.json);
    }
  }
  write_document(false);
}

void RunOutput::add(const json& record) {
  records_.push_back(record);
  journal_->append(record);
  if (std::chrono::steady_clock::now() - last_doc_ >= kDocumentEvery) write_document(false);
}

void RunOutput::finish() { write_document(true); }

void RunOutput::write_document(bool complete) {
  // In the order a run without interruptions produces them: repeat by repeat, each in the
  // catalogue's order; a resumed run's document then reads like an uninterrupted one.
  auto pos = [&](const json& r) {
    auto it = order_.find(r.value("case", "") + "/" + r.value("variant", ""));
    return std::make_pair(r.value("repeat", 0), it == order_.end() ? order_.size() : it->second);
  };
  std::stable_sort(records_.begin(), records_.end(), [&](const json& a, const json& b) { return pos(a) < pos(b); });
  json doc = header_;
  doc["complete"] = complete;
  doc["finished_at"] = complete ? json(rp::cli::now_iso()) : json(nullptr);
  doc["records"] = records_;
  rp::cli::write_atomic(doc_path_, doc.dump(2) + "\n");
  last_doc_ = std::chrono::steady_clock::now();
}

}  // namespace rp::cli
