#include "cli/common/options.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

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

}  // namespace rp::cli
