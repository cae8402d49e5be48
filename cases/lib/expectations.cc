#include "cases/lib/expectations.h"

#include <fnmatch.h>

#include <cmath>

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

namespace {

// "$a", or a sum of counts "$a + $b - $c": a bound may add the counts of the mechanisms it
// admits (and take out those of a mechanism no client sees).
struct Term {
  int sign;
  std::string name;
};
std::vector<Term> ref_terms(const json& v) {
  std::vector<Term> terms;
  if (!v.is_string() || v.get<std::string>().size() < 2 || v.get<std::string>()[0] != '$') return terms;
  const std::string& s = v.get<std::string>();
  int sign = 1;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      sign = s[i] == '+' ? 1 : -1;
      ++i;
      continue;
    }
    if (i >= s.size() || s[i] != '$') throw std::invalid_argument("'" + s + "': terms are $count joined by + or -");
    size_t end = s.find(' ', i);
    if (end == std::string::npos) end = s.size();
    terms.push_back({sign, s.substr(i + 1, end - i - 1)});
    sign = 1;
    i = end;
  }
  return terms;
}

std::vector<std::string> refs_of(const json& want) {
  std::vector<std::string> v;
  auto add = [&](const json& x) {
    for (const auto& t : ref_terms(x)) v.push_back(t.name);
  };
  if (want.is_object()) {
    for (auto& [bk, bv] : want.items()) add(bv);
  } else {
    add(want);
  }
  return v;
}

// The counts an expect map cannot do without: its keys and the counts its "$ref"s name.
void required_counts(const json& expect, std::set<std::string>& out) {
  for (auto& [key, want] : expect.items()) {
    out.insert(key);
    for (const auto& r : refs_of(want)) out.insert(r);
  }
}

json resolve(const json& v, const json& observed) {
  const auto terms = ref_terms(v);
  if (terms.empty()) return v;
  if (terms.size() == 1 && terms[0].sign == 1) return observed.value(terms[0].name, json());
  double sum = 0;
  for (const auto& t : terms) {
    const json x = observed.value(t.name, json());
    if (!x.is_number()) return nullptr;
    sum += t.sign * x.get<double>();
  }
  return sum == std::floor(sum) ? json(static_cast<int64_t>(sum)) : json(sum);
}

}  // namespace

// {"key": "why", ...}: every why a non-empty string.
static std::map<std::string, std::string> reasons_field(const json& e, const char* key, const std::string& where) {
  std::map<std::string, std::string> out;
  if (!e.contains(key)) return out;
  if (!e[key].is_object()) throw std::invalid_argument(where + ": '" + key + "' must be an object {count: why}");
  for (auto& [k, v] : e[key].items()) {
    if (!v.is_string() || v.get<std::string>().empty())
      throw std::invalid_argument(where + ": " + key + "." + k + ": say why (a non-empty string)");
    out[k] = v.get<std::string>();
  }
  return out;
}

static void check_expect(const json& expect, const std::string& where, const std::string& name) {
  if (!expect.is_object() || expect.empty())
    throw std::invalid_argument(where + ": '" + name + "' must be a non-empty object");
  for (auto& [k, v] : expect.items()) {
    if (!v.is_object()) continue;
    for (auto& [bk, bv] : v.items())
      if (bk != "min" && bk != "max")
        throw std::invalid_argument(where + ": " + name + "." + k + ": unknown bound '" + bk + "' (min, max)");
    if (v.empty()) throw std::invalid_argument(where + ": " + name + "." + k + ": a bound needs min or max");
  }
  for (auto& [k, v] : expect.items()) {
    try {
      refs_of(v);
    } catch (const std::invalid_argument& err) {
      throw std::invalid_argument(where + ": " + name + "." + k + ": " + err.what());
    }
  }
}

Expectations Expectations::parse(const json& j, const std::string& origin) {
  static const std::set<std::string> top_keys = {"schema", "cases", "comment"};
  static const std::set<std::string> entry_keys = {"variants", "kernel",  "requires",      "expect", "optional",
                                                    "xfail",    "skip",    "informational", "source", "note"};
  static const std::set<std::string> xfail_keys = {"reason", "expect", "evidence"};
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
      if (e.contains("skip")) x.skip = str_field(e, "skip", where);
      x.source = str_field(e, "source", where);
      x.note = str_field(e, "note", where);
      if (x.source.empty()) throw std::invalid_argument(where + ": 'source' (the document or commit) is required");
      x.optional = reasons_field(e, "optional", where);
      x.informational = reasons_field(e, "informational", where);
      if (!x.skip) {
        check_expect(e.value("expect", json()), where, "expect");
        x.expect = e["expect"];
      }
      for (auto& [k, why] : x.optional)
        if (!x.expect.contains(k)) throw std::invalid_argument(where + ": optional '" + k + "' is not a key of expect");
      for (auto& [k, why] : x.informational)
        for (auto& [ek, ev] : x.expect.items())
          if (glob_match(k, ek))
            throw std::invalid_argument(where + ": informational '" + k + "' names '" + ek + "', which expect judges");
      if (e.contains("xfail")) {
        const json& xf = e["xfail"];
        if (!xf.is_object()) throw std::invalid_argument(where + ": 'xfail' must be {reason, expect, evidence}");
        for (auto& [k, v] : xf.items())
          if (!xfail_keys.count(k)) throw std::invalid_argument(where + ": xfail: unknown key '" + k + "'");
        KnownDifference d;
        d.reason = str_field(xf, "reason", where + ": xfail");
        d.evidence = str_field(xf, "evidence", where + ": xfail");
        if (d.reason.empty() || d.evidence.empty())
          throw std::invalid_argument(where + ": xfail needs 'reason' and 'evidence' (what shows the kernel does this)");
        if (!xf.contains("expect"))
          throw std::invalid_argument(where + ": xfail needs 'expect': what the kernel does instead");
        check_expect(xf["expect"], where, "xfail.expect");
        for (auto& [k, v] : xf["expect"].items())
          if (!x.expect.contains(k))
            throw std::invalid_argument(where + ": xfail.expect." + k + " overrides no key of expect");
        d.expect = xf["expect"];
        x.xfail = std::move(d);
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

namespace {

// Keys of a record that are not counts: the sampler's provenance maps, and the ledger's
// mismatches, which the judge checks itself.
const std::set<std::string> kNotCounts = {"kernel_sources", "kernel_not_observable", "kernel_errors",
                                          "ledger_mismatches"};

struct Comparison {
  std::string mismatches;
  json expected = json::object();  // "$x" resolved
};

// Compares `observed` with one expect map. Checks that involve a count in `dropped` (null and
// allowed to be: optional or not offered by the kernel) are left out; the caller says so.
Comparison compare(const json& expect, const json& observed, const std::set<std::string>& dropped) {
  Comparison c;
  auto mismatch = [&](const std::string& text) { c.mismatches += (c.mismatches.empty() ? "" : "; ") + text; };
  for (auto& [key, want] : expect.items()) {
    const bool bounds = want.is_object();
    json w;
    if (bounds) {
      w = json::object();
      for (auto& [bk, bv] : want.items()) w[bk] = resolve(bv, observed);
    } else {
      w = resolve(want, observed);
    }
    c.expected[key] = w;
    bool skip = dropped.count(key) > 0;
    for (const auto& r : refs_of(want)) skip = skip || dropped.count(r);
    if (skip) continue;
    const json& got = observed[key];
    auto named = [](const json& spec, const json& value) {
      return value.dump() + (spec != value ? " (" + spec.get<std::string>() + ")" : "");
    };
    if (bounds) {
      if (!got.is_number()) {
        mismatch(key + ": expected a number within bounds, observed " + got.dump());
      } else if (want.contains("min") && got.get<double>() < w["min"].get<double>()) {
        mismatch(key + ": expected >= " + named(want["min"], w["min"]) + ", observed " + got.dump());
      } else if (want.contains("max") && got.get<double>() > w["max"].get<double>()) {
        mismatch(key + ": expected <= " + named(want["max"], w["max"]) + ", observed " + got.dump());
      }
    } else if (got != w) {
      mismatch(key + ": expected " + named(want, w) + ", observed " + got.dump());
    }
  }
  return c;
}

std::string reason_in(const json& observed, const char* map, const std::string& key) {
  if (!observed.contains(map) || !observed[map].is_object() || !observed[map].contains(key)) return "";
  const json& r = observed[map][key];
  return r.is_string() ? r.get<std::string>() : r.dump();
}

void append(std::string& to, const std::string& sep, const std::string& text) {
  if (!text.empty()) to += (to.empty() ? "" : sep) + text;
}

}  // namespace

Judgement Expectations::judge(const Expectation& e, const json& observed) {
  Judgement j;
  j.expected = json::object();
  if (!observed.is_object()) {
    j.reason = "the case returned no counts";
    return j;
  }
  std::set<std::string> required;
  required_counts(e.expect, required);
  std::set<std::string> judged = required;
  if (e.xfail) required_counts(e.xfail->expect, judged);

  // Every count the case returns is judged or declared informational, so a count added to
  // a case without a decision about it is seen.
  std::string undeclared;
  for (auto& [key, v] : observed.items()) {
    if (kNotCounts.count(key) || judged.count(key)) continue;
    bool info = false;
    for (auto& [pattern, why] : e.informational) info = info || glob_match(pattern, key);
    if (!info) append(undeclared, ", ", key);
  }
  if (!undeclared.empty()) {
    j.reason = "counts neither judged nor declared informational by the expectation: " + undeclared;
    return j;
  }

  // A required count that is null never passes by dropping its check.
  std::set<std::string> dropped;
  std::string errors, unobservable, optional_absent;
  for (const auto& key : judged) {
    // An optional count may be absent too (a record from a build before it existed).
    if (!observed.contains(key) && !e.optional.count(key)) {
      append(errors, "; ", "the case did not observe '" + key + "'");
      continue;
    }
    if (observed.contains(key) && !observed[key].is_null()) continue;
    if (auto o = e.optional.find(key); o != e.optional.end()) {
      dropped.insert(key);
      append(optional_absent, "; ", key + " (optional: " + o->second + ")");
    } else if (auto why = reason_in(observed, "kernel_errors", key); !why.empty()) {
      append(errors, "; ", key + ": " + why);
    } else if (auto why = reason_in(observed, "kernel_not_observable", key); !why.empty()) {
      dropped.insert(key);
      append(unobservable, "; ", key + ": " + why);
    } else {
      append(errors, "; ", key + ": null, and no kernel_not_observable or kernel_errors entry says why (the case failed to count it)");
    }
  }
  if (!errors.empty()) {
    j.verdict = Verdict::Error;
    j.reason = "required counts not read: " + errors;
    return j;
  }

  const Comparison doc = compare(e.expect, observed, dropped);
  j.expected = doc.expected;
  const bool skip = !unobservable.empty();
  if (observed.contains("ledger_mismatches") && !observed["ledger_mismatches"].empty()) {
    std::string m;
    for (const auto& line : observed["ledger_mismatches"]) append(m, "; ", line.is_string() ? line.get<std::string>() : line.dump());
    j.verdict = Verdict::Fail;
    j.reason = "ledger does not reconcile: " + m;
    append(j.reason, "; ", doc.mismatches);
  } else if (!e.xfail) {
    j.verdict = !doc.mismatches.empty() ? Verdict::Fail : skip ? Verdict::Skip : Verdict::Pass;
    j.reason = doc.mismatches;
  } else {
    json known_expect = e.expect;
    known_expect.update(e.xfail->expect);
    const Comparison known = compare(known_expect, observed, dropped);
    // The documented outcome first: a known difference stated loosely (a bound) must not
    // hide a kernel that was fixed.
    if (doc.mismatches.empty()) {
      j.verdict = skip ? Verdict::Skip : Verdict::Xpass;
      j.reason = "expected to differ (" + e.xfail->reason + ") but matched the documented outcome";
    } else if (known.mismatches.empty()) {
      j.verdict = skip ? Verdict::Skip : Verdict::Xfail;
      j.reason = e.xfail->reason + " [documented: " + doc.mismatches + "]";
    } else {
      j.verdict = Verdict::Fail;
      j.reason = "neither the documented outcome [" + doc.mismatches + "] nor the known difference [" +
                 known.mismatches + "]";
    }
  }
  if (skip) append(j.reason, "; ", "not observable on this kernel: " + unobservable);
  append(j.reason, "; ", optional_absent.empty() ? "" : "not observed: " + optional_absent);
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
