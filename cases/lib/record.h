// One result record per case x variant x repeat: the normalized shape that `run`, the JSON
// output and the kernel matrix all share (schema in results/schemas/run-record.schema.json).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cases/lib/expectations.h"

namespace rp::cases {

struct Record {
  std::string case_name;
  std::string variant;
  std::string kernel;  // uname -r
  int repeat = 0;
  nlohmann::json expected = nlohmann::json::object();
  nlohmann::json observed = nlohmann::json::object();
  Verdict verdict = Verdict::Error;
  std::string reason;
  std::string source;
  double duration_s = 0;

  nlohmann::json to_json() const;
  // The inverse of to_json, for records read back (`run --resume`). Throws
  // std::invalid_argument naming what is missing or malformed.
  static Record from_json(const nlohmann::json& j);
};

// Where records go. The CLI installs one; a case program run by ctest has none (gtest's
// own assertions report there).
using RecordSink = std::function<void(const Record&)>;
void set_record_sink(RecordSink sink);
void emit(const Record& r);
void set_current_repeat(int repeat);
int current_repeat();

}  // namespace rp::cases
