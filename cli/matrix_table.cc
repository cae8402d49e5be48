// The matrix state from the driver's events, its table and its --json document; moved out
// of cli/matrix.cc so that `merge` prints and writes exactly what `matrix` does.

#include "cli/matrix_table.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

namespace rp::cli::matrix {

void State::apply(const nlohmann::json& ev) {
  const std::string type = ev.value("ev", "");
  if (type == "plan") {
    kernels = ev.value("kernels", std::vector<std::string>{});
    variants = ev.value("variants", std::vector<std::string>{});
    if (ev.contains("shard") && ev["shard"].is_object()) shard = ev["shard"];
    if (ev.contains("items") && ev["items"].is_object())
      for (const auto& [k, n] : ev["items"].items())
        if (n.is_number_unsigned()) items[k] = n.get<size_t>();
  } else if (type == "kernel") {
    const std::string name = ev.value("kernel", "?");
    auto& k = by_kernel[name];
    k.state = ev.value("state", k.state);
    if (ev.contains("release") && ev["release"].is_string()) k.release = ev["release"];
    if (ev.contains("error") && ev["error"].is_string()) k.error = ev["error"];
    if (ev.contains("console_log") && ev["console_log"].is_string()) k.console_log = ev["console_log"];
    if (ev.contains("duration_s") && ev["duration_s"].is_number()) k.duration_s = ev["duration_s"];
    transitions.emplace_back(name, k.state);
  } else if (type == "progress") {
    const std::string name = ev.value("kernel", "?");
    auto& k = by_kernel[name];
    k.done = ev.value("done", 0);
    k.total = ev.value("total", 0);
    if (k.state == "booting") {
      k.state = "running";
      transitions.emplace_back(name, k.state);
    }
  } else if (type == "record" && ev.contains("record")) {
    const auto& r = ev["record"];
    records[{ev.value("kernel", "?"), r.value("case", "") + "/" + r.value("variant", "")}] = r;
  }
}

size_t State::expected(const std::string& kernel) const {
  auto it = items.find(kernel);
  return it == items.end() ? variants.size() : it->second;
}

std::map<std::string, int> State::verdicts(const std::string& kernel, size_t* n) const {
  std::map<std::string, int> out;
  size_t total = 0;
  for (const auto& [key, r] : records)
    if (key.first == kernel) {
      ++out[r.value("verdict", "?")];
      ++total;
    }
  if (n) *n = total;
  return out;
}

void EventFile::poll(State& s) {
  std::ifstream f(path_);
  if (!f) return;
  f.seekg(static_cast<std::streamoff>(offset_));
  std::string line;
  while (std::getline(f, line)) {
    if (f.eof()) break;  // a line still being written: read it next time
    offset_ += line.size() + 1;
    try {
      s.apply(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
    }
  }
}

bool bad(const std::string& verdict) { return verdict != "PASS" && verdict != "XFAIL" && verdict != "SKIP"; }

int print_table(const State& s, bool tty) {
  if (s.kernels.empty()) return 0;
  size_t wrow = 12;
  for (const auto& v : s.variants) wrow = std::max(wrow, v.size());
  std::vector<size_t> wcol;
  for (const auto& k : s.kernels) wcol.push_back(std::max<size_t>(k.size(), 5));
  std::printf("\n  %-*s", static_cast<int>(wrow), "case/variant");
  for (size_t i = 0; i < s.kernels.size(); ++i) std::printf("  %-*s", static_cast<int>(wcol[i]), s.kernels[i].c_str());
  std::printf("\n");
  int differing = 0, failing = 0;
  std::map<std::string, std::map<std::string, int>> totals;
  for (const auto& v : s.variants) {
    std::vector<std::string> cells;
    std::set<std::string> distinct;
    for (const auto& k : s.kernels) {
      auto it = s.records.find({k, v});
      std::string cell = it == s.records.end() ? "-" : it->second.value("verdict", "?");
      cells.push_back(cell);
      if (cell != "-") distinct.insert(cell);
      ++totals[k][cell];
      if (cell != "-" && bad(cell)) ++failing;
    }
    const bool differs = distinct.size() > 1;
    differing += differs;
    std::printf("%s %-*s", differs ? (tty ? "\033[1m*" : "*") : " ", static_cast<int>(wrow), v.c_str());
    for (size_t i = 0; i < cells.size(); ++i) {
      const char* c = !tty ? "" : cells[i] == "PASS" ? "\033[32m" : bad(cells[i]) && cells[i] != "-" ? "\033[1;31m" : "\033[33m";
      std::printf("  %s%-*s%s", c, static_cast<int>(wcol[i]), cells[i].c_str(), tty ? "\033[0m" : "");
    }
    std::printf("%s\n", differs && tty ? "\033[0m" : "");
  }
  std::printf("\n");
  for (const auto& k : s.kernels) {
    auto it = s.by_kernel.find(k);
    std::string line = "  " + k;
    if (it != s.by_kernel.end() && !it->second.release.empty()) line += " (" + it->second.release + ")";
    line += ":";
    for (const auto& [verdict, n] : totals[k]) line += " " + std::to_string(n) + " " + verdict;
    std::printf("%s\n", line.c_str());
    if (it != s.by_kernel.end() && !it->second.error.empty())
      std::printf("      error: %s\n      log: %s\n", it->second.error.c_str(), it->second.console_log.c_str());
  }
  std::printf("\nmatrix: %zu kernel(s) x %zu variant(s); %d row(s) differ between kernels (*); %d cell(s) FAIL, XPASS or "
              "ERROR\n",
              s.kernels.size(), s.variants.size(), differing, failing);
  return failing;
}

nlohmann::json document(const State& state, bool complete) {
  nlohmann::json out = {{"schema", "reuseport-check/matrix/1"}, {"complete", complete},
                        {"kernels", nlohmann::json::array()},     {"records", nlohmann::json::array()}};
  if (state.shard.is_object()) out["shard"] = state.shard;
  for (const auto& k : state.kernels) {
    auto it = state.by_kernel.find(k);
    nlohmann::json kj = {{"name", k}};
    if (it != state.by_kernel.end()) {
      kj["release"] = it->second.release;
      kj["error"] = it->second.error;
    }
    out["kernels"].push_back(kj);
    for (const auto& v : state.variants) {
      auto r = state.records.find({k, v});
      if (r != state.records.end()) out["records"].push_back(r->second);
    }
  }
  return out;
}

}  // namespace rp::cli::matrix
