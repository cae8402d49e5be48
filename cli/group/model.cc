#include "cli/group/model.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <tuple>

namespace rp::group {

namespace {

std::string proto_family(const SocketDiag& d) {
  return std::string(d.protocol == IPPROTO_UDP ? "udp" : "tcp") + (d.family == AF_INET6 ? "6" : "4");
}

std::string endpoint(const SocketDiag& d) {
  return d.family == AF_INET6 ? "[" + d.address + "]:" + std::to_string(d.port) : d.address + ":" + std::to_string(d.port);
}

}  // namespace

std::vector<Group> assign_groups(std::vector<Member>& members) {
  std::vector<Group> groups;
  std::map<std::string, size_t> index;
  for (auto& m : members) {
    std::string label;
    bool from_kernel = false;
    if (m.kernel && m.kernel->has_group) {
      label = "kernel group " + std::to_string(m.kernel->number);
      from_kernel = true;
    } else if (m.kernel && !m.kernel->reuseport) {
      // Without SO_REUSEPORT a socket shares its port with nobody: a group of its own.
      label = "alone " + std::to_string(m.diag.cookie) + " (no SO_REUSEPORT)";
      from_kernel = true;
    } else {
      label = "inferred " + proto_family(m.diag) + " " + endpoint(m.diag) + " uid " + std::to_string(m.diag.uid);
      if (m.diag.bound_ifindex) label += " dev " + std::to_string(m.diag.bound_ifindex);
      if (m.diag.v6only) label += *m.diag.v6only ? " v6only" : " dual-stack";
    }
    m.group = label;
    auto [it, fresh] = index.try_emplace(label, groups.size());
    if (fresh) {
      Group g;
      g.label = label;
      g.from_kernel = from_kernel;
      if (m.kernel && m.kernel->has_group) {
        g.reuseport_id = m.kernel->reuseport_id;
        g.kernel_num_socks = m.kernel->num_socks;
        if (m.kernel->has_prog)
          g.program = {{"id", m.kernel->prog_id == 0 ? nlohmann::json() : nlohmann::json(m.kernel->prog_id)},
                       {"type", m.kernel->prog_type},
                       {"attach_type", m.kernel->prog_attach_type},
                       {"name", m.kernel->prog_name}};
        else
          g.program = "none";
      } else if (m.kernel) {
        g.program = "none";  // no group, so no program can be attached to one
      } else {
        g.program = nullptr;
        g.program_why = "not observable here: no getsockopt() returns a reuseport group's program, and the "
                        "socket iterator that reads sk_reuseport_cb did not load";
      }
      groups.push_back(std::move(g));
    }
    groups[it->second].cookies.push_back(m.diag.cookie);
  }
  return groups;
}

void assign_shares(std::vector<Member>& members, std::vector<Group>& groups,
                   const std::optional<std::map<std::uint64_t, std::uint64_t>>& fresh_by_cookie) {
  std::map<std::string, Group*> by_label;
  for (auto& g : groups) {
    g.fresh = fresh_by_cookie ? std::optional<std::uint64_t>(0) : std::nullopt;
    by_label[g.label] = &g;
  }
  if (!fresh_by_cookie) {
    for (auto& m : members) m.fresh = m.share = std::nullopt;
    return;
  }
  for (auto& m : members) {
    auto it = fresh_by_cookie->find(m.diag.cookie);
    m.fresh = it == fresh_by_cookie->end() ? 0 : it->second;
    *by_label.at(m.group)->fresh += *m.fresh;
  }
  for (auto& m : members) {
    const auto total = *by_label.at(m.group)->fresh;
    m.share = total ? std::optional<double>(static_cast<double>(*m.fresh) / static_cast<double>(total)) : std::nullopt;
  }
}

std::map<std::uint64_t, std::uint64_t> delta(const std::map<std::uint64_t, std::uint64_t>& now,
                                             const std::map<std::uint64_t, std::uint64_t>& before) {
  std::map<std::uint64_t, std::uint64_t> out;
  for (const auto& [cookie, n] : now) {
    auto it = before.find(cookie);
    const std::uint64_t b = it == before.end() || it->second > n ? 0 : it->second;
    out[cookie] = n - b;
  }
  return out;
}

Change diff(const std::set<std::uint64_t>& before, const std::set<std::uint64_t>& now) {
  Change c;
  for (auto x : now)
    if (!before.count(x)) c.joined.push_back(x);
  for (auto x : before)
    if (!now.count(x)) c.left.push_back(x);
  return c;
}

nlohmann::json to_json(const Member& m) {
  using nlohmann::json;
  const auto& d = m.diag;
  const bool tcp = d.protocol == IPPROTO_TCP;
  json owners = json::array();
  for (const auto& o : m.owners)
    owners.push_back({{"pid", o.pid}, {"ppid", o.ppid}, {"comm", o.comm}, {"start_ticks", o.start_ticks},
                      {"start_time", o.start_time}, {"fds", o.fds}});
  auto opt = [](const auto& v) { return v ? json(*v) : json(); };
  return {{"cookie", d.cookie},
          {"inode", d.inode},
          {"group", m.group},
          {"protocol", tcp ? "tcp" : "udp"},
          {"family", d.family == AF_INET6 ? "inet6" : "inet"},
          {"address", d.address},
          {"port", d.port},
          {"v6only", opt(d.v6only)},
          {"state", d.state},
          {"uid", d.uid},
          {"bound_ifindex", d.bound_ifindex},
          {"reuseport", opt(m.reuseport)},
          {"backlog", tcp ? json(d.wqueue) : json()},
          {"accept_queue", tcp ? json(d.rqueue) : json()},
          {"receive_queue_bytes", tcp ? json() : json(d.rqueue)},
          {"drops", opt(d.drops)},
          {"incoming_cpu", opt(m.incoming_cpu)},
          {"owners", owners},
          {"new", opt(m.fresh)},
          {"share", opt(m.share)}};
}

nlohmann::json to_json(const Group& g) {
  using nlohmann::json;
  auto opt = [](const auto& v) { return v ? json(*v) : json(); };
  json j = {{"label", g.label},
            {"source", g.from_kernel ? "kernel" : "inferred"},
            {"reuseport_id", opt(g.reuseport_id)},
            {"kernel_num_socks", opt(g.kernel_num_socks)},
            {"members", g.cookies},
            {"new", opt(g.fresh)},
            {"program", g.program}};
  if (!g.program_why.empty()) j["program_why"] = g.program_why;
  return j;
}

}  // namespace rp::group
