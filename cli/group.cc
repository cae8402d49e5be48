// `reuseport-check group`: who is in a port's reuseport group(s) and who gets the traffic.
// Per member: socket cookie and inode, owning processes (pid, command, start time: its
// generation), address and family, backlog and accept queue (TCP) or receive queue and drops
// (UDP), SO_INCOMING_CPU, the group it is in and the group's steering program, and its share
// of the group's new connections or datagrams over the last interval. With --watch it keeps
// going: one line per member that joined or left, and the table each interval.
//
// The command moves itself into the target network namespace first (sock_diag, the socket
// iterators and the namespace filter of the counters all answer for the caller's
// namespace); /proc stays the host's, where every owner is visible.

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cases/lib/kernel.h"
#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/group/collect.h"
#include "harness/sockdiag.h"

namespace rp::cli {

namespace {

using nlohmann::json;

constexpr const char* kGroupDescription =
    "Shows the members of the reuseport group(s) on port P: per socket its cookie and inode,\n"
    "the processes that hold it (pid, command, start time), address and family, backlog and\n"
    "accept queue (TCP) or receive queue and drops (UDP), SO_INCOMING_CPU, the group it is in\n"
    "and the group's steering program, and its share of the group's new connections (TCP) or\n"
    "datagrams (UDP) over the last interval. With --watch, keeps showing them: one line per\n"
    "member that joins or leaves, and the table every interval. What the running kernel cannot\n"
    "tell is shown as n/a with the reason.";

constexpr const char* kGroupFooter = R"FOOTER(Without --watch the shares are measured over one --interval (default 1 s) before the
table is printed. --json PATH is rewritten atomically after every interval with
"complete": false, and with "complete": true at the end (results/schemas/group.schema.json).

Exit status: 0; 2 on bad usage, an unwritable --json path, an unknown namespace or process,
nothing bound to the port when the command starts, or missing privileges.

Environment: needs root, or CAP_BPF/CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON and
CAP_SYS_PTRACE (to read the owners' descriptors).

Examples:
  reuseport-check group --port 80
  reuseport-check group --port 8080 --pid "$(pgrep -o nginx)" --watch --duration 60 --json group.json
  reuseport-check group --port 53 --udp --netns dns
)FOOTER";

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
  int port = -1;
  NamespaceTarget ns;
  std::string json_path;
  bool udp = false, watch = false;
  double interval = 1, duration = 0;
};

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void sleep_until(double target) {
  while (!g_stop && now_s() < target) {
    const double left = target - now_s();
    timespec ts{static_cast<time_t>(left), static_cast<long>((left - std::floor(left)) * 1e9)};
    nanosleep(&ts, nullptr);
  }
}

std::string clock_of(double unix_time) {
  time_t t = static_cast<time_t>(unix_time);
  tm u{};
  gmtime_r(&t, &u);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%05.2fZ", u.tm_hour, u.tm_min,
                u.tm_sec + (unix_time - std::floor(unix_time)));
  return buf;
}

// One generation per entry: a process whose parent holds the socket too and that has no
// such children itself (a worker that inherited its master's listener) is listed under that
// parent, by pid only. A master started by another (nginx's USR2 upgrade) keeps its entry.
std::string owners_text(const rp::group::Member& m) {
  if (m.owners.empty()) return "(no process holds it)";
  std::set<int> pids, parents;
  for (const auto& o : m.owners) pids.insert(o.pid);
  for (const auto& o : m.owners)
    if (pids.count(o.ppid)) parents.insert(o.ppid);
  auto is_leaf_child = [&](const rp::group::Owner& o) { return pids.count(o.ppid) && !parents.count(o.pid); };
  std::string s;
  for (const auto& o : m.owners) {
    if (is_leaf_child(o)) continue;
    if (!s.empty()) s += "; ";
    s += std::to_string(o.pid) + " " + o.comm + " (ppid " + std::to_string(o.ppid) + ", started " + clock_of(o.start_time) + ")";
    std::string kids;
    for (const auto& c : m.owners)
      if (c.ppid == o.pid && is_leaf_child(c)) kids += (kids.empty() ? "" : ",") + std::to_string(c.pid);
    if (!kids.empty()) s += " + children " + kids;
  }
  return s;
}

std::string endpoint(const SocketDiag& d) {
  return d.family == AF_INET6 ? "[" + d.address + "]:" + std::to_string(d.port) : d.address + ":" + std::to_string(d.port);
}

std::string program_text(const rp::group::Group& g) {
  if (g.program.is_null()) return "n/a (" + g.program_why + ")";
  if (g.program.is_string()) return g.program.get<std::string>();
  const auto& p = g.program;
  if (p["id"].is_null()) return "classic BPF (SO_ATTACH_REUSEPORT_CBPF; it has no id)";
  std::string s = "id " + p["id"].dump() + " " + p["type"].get<std::string>();
  if (!p["attach_type"].get<std::string>().empty()) s += "/" + p["attach_type"].get<std::string>();
  if (!p["name"].get<std::string>().empty()) s += " '" + p["name"].get<std::string>() + "'";
  return s;
}

void print_table(const rp::group::Sample& s, bool udp, double t) {
  std::printf("t=%.1fs: %zu member(s) in %zu group(s)\n", t, s.members.size(), s.groups.size());
  for (const auto& g : s.groups) {
    std::printf("  group %s: %zu member(s)", g.label.c_str(), g.cookies.size());
    if (g.kernel_num_socks) std::printf(" (the kernel counts %u)", *g.kernel_num_socks);
    std::printf(", steering program: %s, new %s: %s\n", program_text(g).c_str(), udp ? "datagrams" : "connections",
                g.fresh ? std::to_string(*g.fresh).c_str() : "n/a");
    std::printf("    %-20s %-9s %-24s %-6s %8s %9s %4s %8s %6s  %s\n", "cookie", "inode", "address", "v6only",
                udp ? "rq_bytes" : "backlog", udp ? "drops" : "accept_q", "cpu", "new", "share", "owners");
    for (const auto& m : s.members) {
      if (m.group != g.label) continue;
      const auto& d = m.diag;
      std::string v6 = d.v6only ? (*d.v6only ? "yes" : "no") : "-";
      std::string q1 = udp ? std::to_string(d.rqueue) : std::to_string(d.wqueue);
      std::string q2 = udp ? (d.drops ? std::to_string(*d.drops) : "n/a") : std::to_string(d.rqueue);
      std::string cpu = m.incoming_cpu ? std::to_string(*m.incoming_cpu) : "n/a";
      std::string fresh = m.fresh ? std::to_string(*m.fresh) : "n/a";
      char share[16] = "n/a";
      if (m.share) std::snprintf(share, sizeof share, "%.1f%%", *m.share * 100);
      else if (m.fresh) std::snprintf(share, sizeof share, "-");
      std::printf("    %-20llu %-9llu %-24s %-6s %8s %9s %4s %8s %6s  %s\n", static_cast<unsigned long long>(d.cookie),
                  static_cast<unsigned long long>(d.inode), endpoint(d).c_str(), v6.c_str(), q1.c_str(), q2.c_str(),
                  cpu.c_str(), fresh.c_str(), share, owners_text(m).c_str());
    }
  }
  std::fflush(stdout);
}

json sample_json(const rp::group::Sample& s, double t, const rp::group::Change& c) {
  json members = json::array(), groups = json::array();
  for (const auto& m : s.members) members.push_back(rp::group::to_json(m));
  for (const auto& g : s.groups) groups.push_back(rp::group::to_json(g));
  json gone = json::array();
  for (const auto& [cookie, n] : s.gone) gone.push_back({{"cookie", cookie}, {"new", n}});
  return {{"t", t}, {"members", members}, {"groups", groups}, {"joined", c.joined}, {"left", c.left}, {"gone", gone}};
}

// "port 8080: nothing bound here; TCP listens on 80, 443" for an empty port at start.
std::string nothing_there(const Options& o, const std::string& where) {
  const auto ports = o.udp ? udp_bound_ports() : tcp_listening_ports();
  std::string msg = std::string("nothing ") + (o.udp ? "is bound to UDP" : "listens on TCP") + " port " +
                    std::to_string(o.port) + " in " + where;
  if (ports.empty()) return msg + "; no " + (o.udp ? "UDP socket is bound" : "TCP socket listens") + " there at all";
  msg += "; " + std::string(o.udp ? "UDP sockets are bound to" : "TCP listens on") + ":";
  for (auto p : ports) msg += " " + std::to_string(p);
  return msg;
}

}  // namespace

int group_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  Options o;
  auto app = make_app("group", kGroupDescription, kGroupFooter);
  app->add_option("--port", o.port, "The port (1-65535)")->required()->check(CLI::Range(1, 65535));
  add_namespace_options(*app, o.ns, "Look");
  app->add_flag("--udp", o.udp, "The port's UDP sockets (default: its TCP listeners)");
  app->add_option("--json", o.json_path, "Write the members (every interval with --watch) as JSON to PATH")
      ->type_name("PATH");
  auto* watch = app->add_flag("--watch", o.watch, "Keep showing the members: joins and leaves, a table each interval");
  app->add_option("--interval", o.interval, "Seconds over which shares are counted (default 1)")
      ->type_name("S")
      ->check(seconds());
  app->add_option("--duration", o.duration, "With --watch: stop after S seconds (default: until interrupted)")
      ->type_name("S")
      ->check(seconds())
      ->needs(watch);
  if (auto rc = parse(*app, args)) return *rc;
  if (!o.json_path.empty()) {
    try {
      check_writable(o.json_path);
    } catch (const OutputError& e) {
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      return 2;
    }
  }
  std::string missing;
  if (!has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: group needs root (sock_diag and BPF in the target's namespace, the owners' "
                         "descriptors); missing:%s\n", missing.c_str());
    return 2;
  }
  const std::string where = o.ns.describe();
  const int protocol = o.udp ? IPPROTO_UDP : IPPROTO_TCP;
  const auto port = static_cast<uint16_t>(o.port);
  std::unique_ptr<rp::group::Collector> collector;
  try {
    enter_netns(o.ns);
    if (port_sockets(protocol, port).empty()) {
      std::fprintf(stderr, "reuseport-check: %s\n", nothing_there(o, where).c_str());
      return 2;
    }
    collector = std::make_unique<rp::group::Collector>(protocol, port);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::printf("%s port %u in %s on kernel %s; shares over %g s\n", o.udp ? "UDP" : "TCP", port, where.c_str(),
              rp::cases::kernel_release().c_str(), o.interval);
  for (const auto& [k, why] : collector->not_observable()) std::printf("  n/a %s: %s\n", k.c_str(), why.c_str());
  std::fflush(stdout);

  json samples = json::array(), changes = json::array();
  RewrittenDocument doc(o.json_path);
  // Rewritten whole after every interval, as watch does; once a rewrite costs more than a
  // few percent of the time between samples (a long watch of a large group), rewrites are
  // spaced out to keep it there. The final one is always written.
  double next_write = 0;
  auto write_doc = [&](bool complete) {
    if (o.json_path.empty() || (!complete && now_s() < next_write)) return true;
    const double w0 = now_s();
    json sources(collector->sources());
    json out = {{"schema", "reuseport-check/group/1"}, {"complete", complete},
                {"port", port},                         {"protocol", o.udp ? "udp" : "tcp"},
                {"namespace", where},                   {"kernel", rp::cases::kernel_release()},
                {"interval_s", o.interval},             {"watch", o.watch},
                {"sources", sources},                   {"not_observable", json(collector->not_observable())},
                {"changes", changes},                   {"samples", samples}};
    const bool ok = doc.write(out.dump(2) + "\n", complete);
    next_write = now_s() + 20 * (now_s() - w0);
    return ok;
  };

  const double t0 = now_s();
  std::set<uint64_t> before;
  try {
    // The members when the counters were attached: a socket that appears after that
    // joined, even before the first sample.
    for (const auto& d : port_sockets(protocol, port)) before.insert(d.cookie);
    while (!g_stop) {
      double target = now_s() + o.interval;
      if (o.duration > 0) target = std::min(target, t0 + o.duration);
      sleep_until(target);
      // Ctrl-C/SIGTERM cuts the interval short but still takes its sample: what happened
      // since the last one is counted, so the samples add up to everything since the start.
      const double t = now_s() - t0;
      auto s = collector->collect();
      std::set<uint64_t> now;
      for (const auto& m : s.members) now.insert(m.diag.cookie);
      auto change = rp::group::diff(before, now);
      for (auto c : change.joined)
        for (const auto& m : s.members)
          if (m.diag.cookie == c) {
            std::printf("t=%.1fs joined: cookie %llu %s group %s, %s\n", t, static_cast<unsigned long long>(c),
                        endpoint(m.diag).c_str(), m.group.c_str(), owners_text(m).c_str());
            changes.push_back({{"t", t}, {"event", "joined"}, {"cookie", c}, {"member", rp::group::to_json(m)}});
          }
      for (auto c : change.left) {
        auto it = s.gone.find(c);
        const uint64_t n = it == s.gone.end() ? 0 : it->second;
        std::printf("t=%.1fs left: cookie %llu (%llu new %s in this interval before it left)\n", t,
                    static_cast<unsigned long long>(c), static_cast<unsigned long long>(n),
                    o.udp ? "datagrams" : "connections");
        changes.push_back({{"t", t}, {"event", "left"}, {"cookie", c}, {"member", nullptr}});
      }
      print_table(s, o.udp, t);
      samples.push_back(sample_json(s, t, change));
      write_doc(false);
      before = std::move(now);
      if (g_stop || !o.watch || (o.duration > 0 && now_s() - t0 >= o.duration)) break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    write_doc(true);
    return 2;
  }
  if (!write_doc(true)) return 2;
  return 0;
}

}  // namespace rp::cli
