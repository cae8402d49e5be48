#include "cli/common/options.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace rp::cli {

std::unique_ptr<CLI::App> make_app(const std::string& name, const std::string& description,
                                   const std::string& footer) {
  auto app = std::make_unique<CLI::App>(description, "reuseport-check " + name);
  app->footer(footer);
  app->get_formatter()->column_width(26);
  // Options may come in any order, each at most once unless it says otherwise; a stray
  // positional argument is an error, not silently ignored.
  app->allow_extras(false);
  app->positionals_at_end(false);
  return app;
}

std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> copy(args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", app.get_name().c_str(), e.what(),
                 app.get_name().c_str());
    return 2;
  }
  return std::nullopt;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "reuseport-check: %s\nRun 'reuseport-check --help' for usage.\n", msg.c_str());
  return 2;
}

bool has_privileges(std::string& missing) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (syscall(SYS_capget, &h, d) != 0) {
    missing = " (capget failed)";
    return false;
  }
  auto has = [&](int cap) { return (d[cap / 32].effective >> (cap % 32)) & 1; };
  if (!has(CAP_NET_ADMIN)) missing += " CAP_NET_ADMIN";
  if (!has(CAP_SYS_ADMIN)) missing += " CAP_SYS_ADMIN";
  return missing.empty();
}

CLI::Validator seconds(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& v) -> std::string {
        constexpr double kMax = 30 * 86400.0;
        size_t pos = 0;
        double d = -1;
        try {
          d = std::stod(v, &pos);
        } catch (const std::exception&) {
          pos = 0;
        }
        if (pos != v.size() || v.empty() || !std::isfinite(d) || d < 0 || (!zero_ok && d == 0) || d > kMax)
          return std::string("needs ") + (zero_ok ? "a number of seconds >= 0" : "a positive number of seconds") +
                 " (at most 30 days), got '" + v + "'";
        return {};
      },
      zero_ok ? "SECONDS>=0" : "SECONDS>0");
}

std::string NamespaceTarget::describe() const {
  if (!netns.empty()) return "network namespace " + netns;
  if (!pid.empty()) return "the network namespace of process " + pid;
  return "the current network namespace";
}

void add_namespace_options(CLI::App& app, NamespaceTarget& t, const std::string& verb) {
  auto* netns = app.add_option("--netns", t.netns, verb + " inside the network namespace /run/netns/NAME (ip netns)")
                    ->type_name("NAME")
                    ->check(CLI::Validator(
                        [](std::string& v) -> std::string {
                          if (v.empty() || v.find('/') != std::string::npos || v[0] == '.')
                            return "takes a name as `ip netns list` shows it, got '" + v + "'";
                          return {};
                        },
                        ""));
  auto* pid = app.add_option("--pid", t.pid, verb + " inside the network namespace of process PID")
                  ->type_name("PID")
                  ->check(CLI::Validator(
                      [](std::string& v) -> std::string {
                        if (v.empty() || v.size() > 10 || v.find_first_not_of("0123456789") != std::string::npos)
                          return "needs a process id, got '" + v + "'";
                        return {};
                      },
                      ""));
  netns->excludes(pid);
  pid->excludes(netns);
}

void enter_netns(const NamespaceTarget& t) {
  std::string path;
  if (!t.netns.empty()) path = "/run/netns/" + t.netns;
  if (!t.pid.empty()) path = "/proc/" + t.pid + "/ns/net";
  if (path.empty()) return;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (!t.netns.empty())
      throw std::runtime_error("no network namespace named '" + t.netns + "' (" + path + ": " + std::strerror(err) + ")");
    throw std::runtime_error("no process " + t.pid + " whose network namespace could be entered (" + path + ": " +
                             std::strerror(err) + ")");
  }
  const int rc = setns(fd, CLONE_NEWNET);
  const int err = errno;
  close(fd);
  if (rc != 0) throw std::runtime_error("setns " + path + ": " + std::strerror(err));
}

}  // namespace rp::cli
