#include "probes/netstat.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace rp::probes::netstat {
namespace {

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

std::uint64_t parse_value(std::string_view word, std::string_view group) {
  const bool negative = !word.empty() && word.front() == '-';
  std::string_view digits = negative ? word.substr(1) : word;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
    throw NetstatError("netstat: bad value '" + std::string(word) + "' in group " +
                       std::string(group));
  return negative ? std::uint64_t{0} - v : v;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw NetstatError("netstat: open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw NetstatError("netstat: read " + path + ": " + std::strerror(errno));
  return ss.str();
}

// /proc/thread-self appeared in 3.17; /proc/self/net is the thread group leader's view.
std::string proc_net_dir() {
  std::ifstream probe("/proc/thread-self/net/netstat");
  return probe ? "/proc/thread-self/net/" : "/proc/self/net/";
}

}  // namespace

Counters parse(std::string_view text) {
  Counters out;
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    if (nl > pos) lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.size() % 2 != 0)
    throw NetstatError("netstat: odd number of lines (" + std::to_string(lines.size()) + ")");
  for (std::size_t i = 0; i < lines.size(); i += 2) {
    auto names = split_words(lines[i]);
    auto values = split_words(lines[i + 1]);
    if (names.empty() || values.empty() || names[0].back() != ':' || names[0] != values[0])
      throw NetstatError("netstat: line " + std::to_string(i + 1) +
                         ": header and value lines do not pair up");
    const std::string_view group = names[0].substr(0, names[0].size() - 1);
    if (names.size() != values.size())
      throw NetstatError("netstat: group " + std::string(group) + " has " +
                         std::to_string(names.size() - 1) + " names but " +
                         std::to_string(values.size() - 1) + " values");
    for (std::size_t k = 1; k < names.size(); ++k) {
      std::string key;
      key.reserve(group.size() + 1 + names[k].size());
      key.append(group).append(".").append(names[k]);
      out[std::move(key)] = parse_value(values[k], group);
    }
  }
  return out;
}

Counters read_current() {
  const std::string dir = proc_net_dir();
  Counters all = parse(slurp(dir + "netstat"));
  Counters snmp = parse(slurp(dir + "snmp"));
  all.merge(snmp);
  return all;
}

Deltas delta(const Counters& before, const Counters& after) {
  Deltas d;
  for (const auto& [key, v] : after) {
    if (auto it = before.find(key); it != before.end())
      d[key] = static_cast<std::int64_t>(v - it->second);
  }
  return d;
}

namespace {
template <class Map>
auto lookup(const Map& m, std::string_view group, std::string_view name)
    -> std::optional<typename Map::mapped_type> {
  std::string key;
  key.append(group).append(".").append(name);
  if (auto it = m.find(key); it != m.end()) return it->second;
  return std::nullopt;
}
}  // namespace

std::optional<std::uint64_t> get(const Counters& c, std::string_view group, std::string_view name) {
  return lookup(c, group, name);
}
std::optional<std::int64_t> get(const Deltas& d, std::string_view group, std::string_view name) {
  return lookup(d, group, name);
}

UdpMib read_udp_mib(bool ipv6) {
  std::map<std::string, std::uint64_t, std::less<>> m;
  if (!ipv6) {
    const Counters c = parse(slurp(proc_net_dir() + "snmp"));
    for (const char* n : {"RcvbufErrors", "InErrors", "NoPorts"})
      if (auto v = get(c, "Udp", n)) m[n] = *v;
  } else {
    const std::string path = proc_net_dir() + "snmp6";
    std::istringstream in(slurp(path));
    std::string name, value;
    while (in >> name >> value)
      if (name.rfind("Udp6", 0) == 0) m[name.substr(4)] = parse_value(value, "Udp6");
  }
  auto need = [&](const char* n) {
    auto it = m.find(n);
    if (it == m.end()) throw NetstatError(std::string("netstat: no ") + (ipv6 ? "Udp6" : "Udp.") + n + " counter");
    return it->second;
  };
  return UdpMib{need("NoPorts"), need("RcvbufErrors"), need("InErrors")};
}

}  // namespace rp::probes::netstat
