#include "cases/lib/record.h"

#include <mutex>
#include <stdexcept>

namespace rp::cases {

nlohmann::json Record::to_json() const {
  return {{"case", case_name}, {"variant", variant},  {"kernel", kernel},
          {"repeat", repeat},  {"expected", expected}, {"observed", observed},
          {"verdict", to_string(verdict)}, {"reason", reason}, {"source", source},
          {"duration_s", duration_s}};
}

Record Record::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("a record is not a JSON object");
  auto need = [&](const char* key, bool (nlohmann::json::*is)() const noexcept) -> const nlohmann::json& {
    if (!j.contains(key) || !(j[key].*is)()) throw std::invalid_argument(std::string("a record without a valid '") + key + "'");
    return j[key];
  };
  Record r;
  r.case_name = need("case", &nlohmann::json::is_string).get<std::string>();
  r.variant = need("variant", &nlohmann::json::is_string).get<std::string>();
  r.kernel = need("kernel", &nlohmann::json::is_string).get<std::string>();
  r.repeat = need("repeat", &nlohmann::json::is_number_integer).get<int>();
  if (r.repeat < 0) throw std::invalid_argument("a record with a negative 'repeat'");
  const std::string v = need("verdict", &nlohmann::json::is_string).get<std::string>();
  bool known = false;
  for (Verdict x : {Verdict::Pass, Verdict::Fail, Verdict::Xfail, Verdict::Xpass, Verdict::Skip, Verdict::Error})
    if (v == to_string(x)) r.verdict = x, known = true;
  if (!known) throw std::invalid_argument("a record with the unknown verdict '" + v + "'");
  if (j.contains("expected") && j["expected"].is_object()) r.expected = j["expected"];
  if (j.contains("observed") && j["observed"].is_object()) r.observed = j["observed"];
  r.reason = j.value("reason", "");
  r.source = j.value("source", "");
  r.duration_s = j.contains("duration_s") && j["duration_s"].is_number() ? j["duration_s"].get<double>() : 0.0;
  return r;
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
