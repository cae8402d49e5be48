#include "cases/lib/record.h"

#include <mutex>

namespace rp::cases {

nlohmann::json Record::to_json() const {
  return {{"case", case_name}, {"variant", variant},  {"kernel", kernel},
          {"repeat", repeat},  {"expected", expected}, {"observed", observed},
          {"verdict", to_string(verdict)}, {"reason", reason}, {"source", source},
          {"duration_s", duration_s}};
}

namespace {
std::mutex g_mu;
RecordSink g_sink;
int g_repeat = 0;
}  // namespace

void set_record_sink(RecordSink sink) {
  std::lock_guard<std::mutex> l(g_mu);
  g_sink = std::move(sink);
}

void emit(const Record& r) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_sink) g_sink(r);
}

void set_current_repeat(int repeat) { g_repeat = repeat; }
int current_repeat() { return g_repeat; }

}  // namespace rp::cases
