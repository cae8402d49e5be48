#include "cases/lib/expectations.h"

#include <fnmatch.h>

#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>

namespace rp::cases {

using nlohmann::json;

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::Pass: return "PASS";
    case Verdict::Fail: return "FAIL";
    case Verdict::Xfail: return "XFAIL";
    case Verdict::Xpass: return "XPASS";
    case Verdict::Skip: return "SKIP";
    case Verdict::Error: return "ERROR";
  }
  return "?";
}

bool is_failure(Verdict v) { return v == Verdict::Fail || v == Verdict::Xpass || v == Verdict::Error; }

bool glob_match(const std::string& pattern, const std::string& s) { return fnmatch(pattern.c_str(), s.c_str(), 0) == 0; }

VersionRange VersionRange::parse(const std::string& s) {
  VersionRange r;
  r.text = s;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    std::string part = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? s.size() : end + 1;
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    while (!part.empty() && part.back() == ' ') part.pop_back();
    std::string op;
    for (const char* o : {">=", "<"})
      if (part.rfind(o, 0) == 0) op = o;
    if (op.empty()) throw std::invalid_argument("kernel range '" + s + "': each bound is '>=X.Y[.Z]' or '<X.Y[.Z]'");
    auto v = KernelVersion::parse(part.substr(op.size()));
    if (!v) throw std::invalid_argument("kernel range '" + s + "': '" + part + "' is not a version");
    (op == ">=" ? r.min : r.max) = v;
  }
  if (r.min && r.max && !(*r.min < *r.max)) throw std::invalid_argument("kernel range '" + s + "' is empty");
  return r;
}

bool VersionRange::contains(const KernelVersion& k) const {
  if (min && k < *min) return false;
  if (max && !(k < *max)) return false;
  return true;
}

static std::string str_field(const json& e, const char* key, const std::string& where) {
  if (!e.contains(key)) return "";
  if (!e[key].is_string()) throw std::invalid_argument(where + ": '" + key + "' must be a string");
  return e[key].get<std::string>();
}

Expectations Expectations::parse(const json& j, const std::string& origin) {
  static const std::set<std::string> top_keys = {"schema", "cases", "comment"};
  static const std::set<std::string> entry_keys = {"variants", "kernel", "requires", "expect", "xfail",
                                                    "skip", "source", "note"};
  if (!j.is_object()) throw std::invalid_argument(origin + ": the top level must be an object");
  for (auto& [k, v] : j.items())
    if (!top_keys.count(k)) throw std::invalid_argument(origin + ": unknown key '" + k + "'");
  if (j.value("schema", 0) != 1) throw std::invalid_argument(origin + ": 'schema' must be 1");
  Expectations ex;
  for (auto& [name, entries] : j.at("cases").items()) {
    if (!entries.is_array()) throw std::invalid_argument(origin + ": case '" + name + "' must be a list of entries");
    int i = 0;
    for (const auto& e : entries) {
      const std::string where = origin + ": " + name + "[" + std::to_string(i++) + "]";
      if (!e.is_object()) throw std::invalid_argument(where + ": an entry must be an object");
      for (auto& [k, v] : e.items())
        if (!entry_keys.count(k)) throw std::invalid_argument(where + ": unknown key '" + k + "'");
      Expectation x;
      x.variants = e.contains("variants") ? str_field(e, "variants", where) : "*";
      try {
        x.kernel = VersionRange::parse(str_field(e, "kernel", where));
      } catch (const std::invalid_argument& err) {
        throw std::invalid_argument(where + ": " + err.what());
      }
      if (e.contains("requires")) {
        if (!e["requires"].is_array()) throw std::invalid_argument(where + ": 'requires' must be a list");
        for (const auto& f : e["requires"]) {
          if (!f.is_string() || !features().count(f.get<std::string>()))
            throw std::invalid_argument(where + ": unknown feature " + f.dump());
          x.requires_.push_back(f.get<std::string>());
        }
      }
      if (e.contains("xfail")) x.xfail = str_field(e, "xfail", where);
      if (e.contains("skip")) x.skip = str_field(e, "skip", where);
      x.source = str_field(e, "source", where);
      x.note = str_field(e, "note", where);
      if (x.source.empty()) throw std::invalid_argument(where + ": 'source' (the document or commit) is required");
      if (!x.skip) {
        if (!e.contains("expect") || !e["expect"].is_object() || e["expect"].empty())
          throw std::invalid_argument(where + ": 'expect' must be a non-empty object");
        for (auto& [k, v] : e["expect"].items()) {
          if (!v.is_object()) continue;
          for (auto& [bk, bv] : v.items())
            if (bk != "min" && bk != "max")
              throw std::invalid_argument(where + ": expect." + k + ": unknown bound '" + bk + "' (min, max)");
          if (v.empty()) throw std::invalid_argument(where + ": expect." + k + ": a bound needs min or max");
        }
        x.expect = e["expect"];
      }
      ex.cases_[name].push_back(std::move(x));
    }
  }
  return ex;
}

Expectations Expectations::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument("cannot read the expectations file " + path);
  json j;
  try {
    j = json::parse(f);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  return parse(j, path);
}

Resolved Expectations::resolve(const std::string& case_name, const std::string& variant, const KernelVersion& k) const {
  Resolved r;
  auto it = cases_.find(case_name);
  if (it == cases_.end()) return r;
  for (const auto& e : it->second) {
    if (!glob_match(e.variants, variant) || !e.kernel.contains(k)) continue;
    r.entry = &e;
    if (e.skip) {
      r.skip_reason = *e.skip;
    } else {
      for (const auto& f : e.requires_)
        if (!has_feature(f)) {
          r.skip_reason = f + " absent: " + features().at(f).description;
          break;
        }
    }
    return r;
  }
  return r;
}

// A literal, or "$name": the observed count `name`. Sets `missing` when `name` was not
// observed at all.
static json resolve_ref(const json& v, const json& observed, std::string& missing) {
  if (v.is_string() && !v.get<std::string>().empty() && v.get<std::string>()[0] == '$') {
    std::string ref = v.get<std::string>().substr(1);
    if (!observed.contains(ref)) {
      missing = ref;
      return nullptr;
    }
    return observed[ref];
  }
  return v;
}

Judgement Expectations::judge(const Expectation& e, const json& observed) {
  Judgement j;
  j.expected = json::object();
  std::string mismatches, unobservable;
  auto mismatch = [&](const std::string& text) { mismatches += (mismatches.empty() ? "" : "; ") + text; };
  for (auto& [key, want] : e.expect.items()) {
    std::string missing;
    // {"min": a, "max": b}: a bound on either side or both, each a literal or "$ref".
    const bool bounds = want.is_object();
    json w, lo, hi;
    if (bounds) {
      lo = want.contains("min") ? resolve_ref(want["min"], observed, missing) : json();
      hi = want.contains("max") ? resolve_ref(want["max"], observed, missing) : json();
      w = json::object();
      if (want.contains("min")) w["min"] = lo;
      if (want.contains("max")) w["max"] = hi;
    } else {
      w = resolve_ref(want, observed, missing);
    }
    if (!missing.empty()) {
      j.verdict = Verdict::Error;
      j.reason = "expectation refers to '" + missing + "', which the case did not observe";
      return j;
    }
    j.expected[key] = w;
    if (!observed.contains(key)) {
      j.verdict = Verdict::Error;
      j.reason = "the case did not observe '" + key + "'";
      return j;
    }
    const json& got = observed[key];
    // null: the running kernel cannot observe it (a probe that could not attach). That is
    // said, never taken as a match or as a 0.
    if (got.is_null() || (!bounds && w.is_null()) || (bounds && ((want.contains("min") && lo.is_null()) ||
                                                                 (want.contains("max") && hi.is_null())))) {
      unobservable += (unobservable.empty() ? "" : ", ") + key;
      continue;
    }
    if (bounds) {
      if (!got.is_number()) {
        mismatch(key + ": expected a number within bounds, observed " + got.dump());
      } else if (want.contains("min") && got.get<double>() < lo.get<double>()) {
        mismatch(key + ": expected >= " + lo.dump() + (want["min"] != lo ? " (" + want["min"].get<std::string>() + ")" : "") +
                 ", observed " + got.dump());
      } else if (want.contains("max") && got.get<double>() > hi.get<double>()) {
        mismatch(key + ": expected <= " + hi.dump() + (want["max"] != hi ? " (" + want["max"].get<std::string>() + ")" : "") +
                 ", observed " + got.dump());
      }
    } else if (got != w) {
      mismatch(key + ": expected " + w.dump() + (want != w ? " (" + want.get<std::string>() + ")" : "") + ", observed " +
               got.dump());
    }
  }
  const bool match = mismatches.empty();
  if (e.xfail) {
    j.verdict = match ? Verdict::Xpass : Verdict::Xfail;
    j.reason = match ? "expected to differ (" + *e.xfail + ") but matched" : *e.xfail + " [" + mismatches + "]";
  } else {
    j.verdict = match ? Verdict::Pass : Verdict::Fail;
    j.reason = mismatches;
  }
  if (!unobservable.empty())
    j.reason += (j.reason.empty() ? "" : "; ") + std::string("not observable on this kernel: ") + unobservable;
  return j;
}

std::vector<std::string> Expectations::case_names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : cases_) v.push_back(k);
  return v;
}

extern const char* const kBuiltinExpectations;  // expectations.json, compiled in

std::string expectations_origin() {
  if (const char* p = getenv("RP_EXPECTATIONS")) return p;
  return "cases/expectations.json (built in)";
}

const Expectations& expectations() {
  static std::once_flag once;
  static Expectations ex;
  std::call_once(once, [] {
    if (const char* p = getenv("RP_EXPECTATIONS"))
      ex = Expectations::load(p);
    else
      ex = Expectations::parse(json::parse(kBuiltinExpectations), expectations_origin());
  });
  return ex;
}

}  // namespace rp::cases
