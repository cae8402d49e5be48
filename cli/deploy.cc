// `reuseport-check deploy`: run a user's own server and deploy procedure under load, count
// every connection the deploy lost, and say what the kernel did to each: children orphaned
// in a closed listener's accept queue and their RSTs, SYNs dropped on overflow, SYNs that
// found no listener. CI gets an exit status (1: more lost than --max-lost), JUnit and JSON.
// This file holds the options and their validation; the run is cli/deploy/ (deploy.h says
// which file does what).

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/deploy/deploy.h"
#include "cli/python_driver.h"
#include "harness/socket.h"
#include "harness/udp_flows.h"

namespace rp::cli {

namespace {

constexpr const char* kDescription = R"(Runs your server and your deploy procedure under load and counts every connection the
deploy lost, with what the kernel did to it and when:
  1. --start CMD runs with /bin/sh -c in a network namespace of its own (lo up), until
     port P listens there.
  2. Load on 127.0.0.1:P (or --host) for --warmup seconds, then --deploy CMD runs with
     /bin/sh -c in the same namespace while the load goes on, then --settle seconds more.
  3. Report: attempts, served, lost by client-side outcome, and the kernel's account from
     the reuseport probe and TcpExt (listener closes, children orphaned in a closed
     listener's accept queue and their RSTs, overflows, segments that found no listener),
     each at its time relative to the start of the deploy command.
Every process the commands started is killed at the end (daemons too), on every path, a
SIGKILL of this command included: they run in a PID namespace of their own, with a /proc of it.
With --udp: UDP flows instead of connections (each flow its own source port, sending
requests and expecting answers that name the member: `serve --udp`); the report counts
lost datagrams by the kernel's cause (UDP MIB: no socket, receive buffer full, other
receive errors; the rest unattributed) and broken flows (answered by another member,
as a QUIC connection breaks), each at its send time.)";

constexpr const char* kFooter = R"(Environment of both commands: RP_PORT=P, RP_WORKDIR (a fresh directory, removed
afterwards, for pid files and configs) and RP_CHECK (this program).

Exit status: 0 when at most --max-lost connections were lost (--udp: lost datagrams plus
broken flows); 1 when more were; 2 on bad usage, an unwritable --json or --junit path
(checked before anything starts), a server that never listened, a deploy command that
failed or hung, or missing privileges.

Examples:
  reuseport-check deploy --port 8080 \
      --start "$PWD/docs/examples/serve/start.sh" --deploy "$PWD/docs/examples/serve/swap.sh"
  reuseport-check deploy --udp --port 8053 --start "$PWD/docs/examples/serve-udp/start.sh --drain" \
      --deploy "$PWD/docs/examples/serve-udp/swap.sh --drain"
  reuseport-check deploy --port=8080 --http / --junit deploy.xml \
      --start "$PWD/docs/examples/nginx/start.sh" --deploy "$PWD/docs/examples/nginx/reload.sh"

Needs root, or CAP_SYS_ADMIN, CAP_NET_ADMIN (and CAP_BPF, CAP_PERFMON for the probe).
)";

// An integer in [lo, hi], the whole string.
CLI::Validator integer(long lo, long hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        const std::string range = hi == LONG_MAX ? std::to_string(lo) + " or more" : std::to_string(lo) + "-" + std::to_string(hi);
        size_t pos = 0;
        long n = 0;
        try {
          n = std::stol(v, &pos);
        } catch (const std::exception&) {
          pos = 0;
        }
        if (v.empty() || pos != v.size()) return "needs an integer " + range + ", got '" + v + "'";
        if (n < lo || n > hi) return "needs " + range + ", got '" + v + "'";
        return {};
      },
      hi == LONG_MAX ? "INT>=" + std::to_string(lo) : "INT:" + std::to_string(lo) + "-" + std::to_string(hi));
}

// closed:N (N in flight, 1-8192) or rate:R (R new connections per second, > 0): checked
// here, applied to the options after parsing.
CLI::Validator load_spec() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        std::string inner;
        if (v.rfind("closed:", 0) == 0) {
          inner = v.substr(7);
          return integer(1, 8192)(inner).empty() ? std::string() : "closed:N needs N in 1-8192, got '" + v + "'";
        }
        if (v.rfind("rate:", 0) == 0) {
          inner = v.substr(5);
          return rp::cli::seconds(false)(inner).empty() ? std::string()
                                                        : "rate:R needs a positive number R, got '" + v + "'";
        }
        return "takes closed:N or rate:R, got '" + v + "'";
      },
      "");
}

// The deploy's own options, as given, less those of the run across kernels (which the
// driver takes itself): --kernels, --guest-path, -j, --python, --json, --junit.
std::vector<std::string> per_kernel_args(const std::vector<std::string>& args) {
  static const std::vector<std::string> own = {"--kernels",    "--guest-path", "-j",         "--jobs",
                                               "--python",     "--json",       "--junit",    "--kernel-image",
                                               "--modules",    "--kernel-deb", "--kernel-name"};
  std::vector<std::string> out;
  for (size_t i = 1; i < args.size(); ++i) {
    bool skip = false;
    for (const std::string& name : own) {
      if (args[i] == name) {
        ++i;  // and its value
        skip = true;
        break;
      }
      if (args[i].rfind(name + "=", 0) == 0) {
        skip = true;
        break;
      }
    }
    if (!skip) out.push_back(args[i]);
  }
  return out;
}

// `deploy --kernels`: ci/matrix/deploy_kernels.py boots each kernel with the static binary
// and what the commands need, and runs this deploy inside; its exit status is ours.
int across_kernels(const std::vector<std::string>& args, const std::string& kernels,
                   const std::vector<std::string>& guest_paths, int jobs, const std::string& python,
                   const deploy::Options& o) {
  std::vector<std::string> a = {"--kernels", kernels, "--host-binary", self_path(), "-j", std::to_string(jobs)};
  if (!o.json_path.empty()) a.insert(a.end(), {"--json", std::filesystem::absolute(o.json_path).string()});
  if (!o.junit_path.empty()) a.insert(a.end(), {"--junit", std::filesystem::absolute(o.junit_path).string()});
  for (const std::string& g : guest_paths) a.insert(a.end(), {"--guest-path", std::filesystem::absolute(g).string()});
  // Your own kernels, in the order given: a --modules or --kernel-name belongs to the
  // --kernel-image or --kernel-deb before it.
  for (size_t i = 1; i < args.size(); ++i)
    for (const char* name : {"--kernel-image", "--modules", "--kernel-deb", "--kernel-name"}) {
      std::string value;
      if (args[i] == name && i + 1 < args.size())
        value = args[++i];
      else if (args[i].rfind(std::string(name) + "=", 0) == 0)
        value = args[i].substr(std::string(name).size() + 1);
      else
        continue;
      a.insert(a.end(), {name, std::string(name) == "--kernel-name" ? value : std::filesystem::absolute(value).string()});
      break;
    }
  a.push_back("--");
  const std::vector<std::string> rest = per_kernel_args(args);
  a.insert(a.end(), rest.begin(), rest.end());
  // In the caller's directory: the commands' relative paths and --request mean what they
  // mean on the host run ("running"); the guests get absolute paths only (their words).
  return run_python_module(python, "ci.matrix.deploy_kernels", a, std::filesystem::current_path().string());
}

}  // namespace

int deploy_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  deploy::Options o;
  std::string load;
  auto app = rp::cli::make_app("deploy", kDescription, kFooter);
  app->add_option("--start", o.start, "Starts the server. It may stay in the foreground or daemonize.")->type_name("CMD");
  app->add_option("--deploy", o.deploy,
                  "The deploy: signal the server, start a new generation and stop the old one, anything. "
                  "Must end within --deploy-timeout; a non-zero exit is an error.")
      ->type_name("CMD");
  app->add_option("--port", o.port, "The port the server listens on, or with --udp is bound to (1-65535).")->check(integer(1, 65535))->type_name("P");
  app->add_option("--load", load,
                  "closed:N: N connections in flight at all times (default closed:32); "
                  "rate:R: R new connections per second, open loop.")
      ->check(load_spec())
      ->type_name("closed:N|rate:R");
  app->add_option("--threads", o.threads, "Load generator threads (default 1).")->check(integer(1, 64))->type_name("N");
  app->add_option("--request", o.request_file,
                  "Raw TCP: send FILE's bytes, read until EOF; served = at least one byte, then EOF.")
      ->type_name("FILE");
  app->add_option("--http", o.http_path,
                  "HTTP/1.1: GET PATH with Connection: close; served = a complete response. Non-2xx/3xx "
                  "responses count as lost, apart. Without --request or --http: the protocol of "
                  "`reuseport-check serve`.")
      ->type_name("PATH")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            try {
              http_get_request(v, "h");  // throws a message naming what is wrong
            } catch (const std::exception& e) {
              return e.what();
            }
            return {};
          },
          ""));
  app->add_option("--host", o.host, "The address to load (default 127.0.0.1; ::1 for IPv6).")
      ->type_name("ADDR")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            Endpoint e{v.find(':') != std::string::npos ? Family::V6 : Family::V4, v, 1};
            sockaddr_storage ss;
            try {
              e.to_sockaddr(ss);
            } catch (const std::exception&) {
              return "needs an IPv4 or IPv6 address, got '" + v + "'";
            }
            return {};
          },
          ""));
  app->add_option("--warmup", o.warmup, "Seconds of load before the deploy (default 1).")->check(rp::cli::seconds(true));
  app->add_option("--settle", o.settle, "Seconds of load after the deploy command ended (default 2).")
      ->check(rp::cli::seconds(true));
  app->add_option("--listen-timeout", o.listen_timeout, "How long to wait for the port to listen (default 10).")
      ->check(rp::cli::seconds());
  app->add_option("--deploy-timeout", o.deploy_timeout, "How long the deploy command may take (default 30).")
      ->check(rp::cli::seconds());
  app->add_option("--max-lost", o.max_lost, "Exit 1 when more than K connections were lost (default 0).")
      ->check(integer(0, LONG_MAX))
      ->type_name("K");
  app->add_option("--json", o.json_path, "Write the full report (totals, kernel counts, timeline) as JSON.")->type_name("PATH");
  app->add_option("--junit", o.junit_path, "Write a JUnit XML file: one testsuite, one testcase 'deploy'.")->type_name("PATH");
  std::string kernels, python = "/usr/bin/python3";
  std::vector<std::string> guest_paths;
  int jobs = 1;
  app->add_option("--kernels", kernels,
                  "Run the same deploy on these kernels of ci/kernels.toml (comma separated, or \"all\"; "
                  "\"running\" is this machine's) and print one row per kernel.")
      ->type_name("LIST");
  app->add_option("--guest-path", guest_paths,
                  "With --kernels: a file or directory the guests need (configuration, data, a program the "
                  "commands call), put at the same path (repeatable).")
      ->type_name("PATH");
  std::vector<std::string> images, modules, debs, names;
  app->add_option("--kernel-image", images, "Run it on this kernel image (bzImage/vmlinuz) too, as `matrix` (repeatable).")
      ->type_name("PATH")
      ->allow_extra_args(false);
  app->add_option("--modules", modules, "The modules tree of the --kernel-image before it.")->type_name("DIR")->allow_extra_args(false);
  app->add_option("--kernel-deb", debs, "Run it on the kernel of this linux-image .deb too (repeatable).")
      ->type_name("FILE")
      ->allow_extra_args(false);
  app->add_option("--kernel-name", names, "Name the --kernel-image or --kernel-deb before it.")
      ->type_name("NAME")
      ->allow_extra_args(false);
  app->add_option("-j,--jobs", jobs, "With --kernels: guests at a time (default 1).")->check(integer(1, 16));
  app->add_option("--python", python, "With --kernels: the Python that runs the driver (default /usr/bin/python3).")
      ->type_name("PATH");
  app->add_flag("--udp", o.udp,
                                "UDP flows instead of TCP connections: --flows flows, each its own source port; "
                                "--load closed:N is then N datagrams in flight per flow (default closed:1), rate:R "
                                "datagrams per second over all flows. The server must answer as `serve --udp` does.");
  auto* flows_opt = app->add_option("--flows", o.flows, "With --udp: the number of flows (default 32).")
                        ->check(integer(1, 4096))
                        ->type_name("N");
  auto* reply_opt = app->add_option("--reply-timeout", o.reply_timeout,
                                    "With --udp: seconds after which an answer counts as late, not answered (default 1); "
                                    "a datagram with no answer by the end of the run is lost.")
                        ->check(rp::cli::seconds())
                        ->type_name("S");
  std::string udp_request;
  auto* udp_request_opt =
      app->add_option("--udp-request", udp_request,
                      "With --udp: dns:NAME sends DNS queries for NAME (type A) to a DNS server, each answer matched "
                      "to its query by the DNS ID; a DNS server does not name the member that answered, so broken "
                      "flows are then not observable. Default: the flow requests of `serve --udp`.")
          ->type_name("dns:NAME")
          ->check(CLI::Validator(
              [](std::string& v) -> std::string {
                if (v.rfind("dns:", 0) != 0) return "takes dns:NAME, got '" + v + "'";
                try {
                  dns_query(v.substr(4), 0);
                } catch (const std::exception& e) {
                  return e.what();
                }
                return {};
              },
              ""));
  app->add_flag("--host-net", o.host_net,
                "Run in the current network namespace instead of a private one. Processes that leave it "
                "(daemons) are still found and killed, as descendants; TcpExt counts then include all other traffic.");
  if (auto rc = rp::cli::parse(*app, args)) return *rc;
  if (!o.udp && (flows_opt->count() || reply_opt->count() || udp_request_opt->count()))
    return rp::cli::usage_error(std::string(flows_opt->count() ? "--flows" : reply_opt->count() ? "--reply-timeout" : "--udp-request") +
                                " needs --udp");
  if (!udp_request.empty()) o.dns_name = udp_request.substr(4);
  if (o.udp && (!o.request_file.empty() || !o.http_path.empty()))
    return rp::cli::usage_error(std::string(o.http_path.empty() ? "--request" : "--http") +
                                " is for TCP; --udp sends the UDP flow requests of `serve --udp`");
  if (o.udp && load.empty()) o.concurrency = 1;

  if (!load.empty()) {
    if (load.rfind("closed:", 0) == 0) {
      o.mode = LoadOptions::Mode::Closed;
      o.concurrency = static_cast<unsigned>(std::stol(load.substr(7)));
    } else {
      o.mode = LoadOptions::Mode::Open;
      o.rate = std::stod(load.substr(5));
    }
  }
  using rp::cli::usage_error;
  if (o.start.empty()) return usage_error("deploy needs --start CMD (the command that starts your server)");
  if (o.deploy.empty()) return usage_error("deploy needs --deploy CMD (your deploy procedure)");
  if (o.port < 0) return usage_error("deploy needs --port P");
  if (!o.request_file.empty() && !o.http_path.empty()) return usage_error("--request and --http are exclusive");
  if (o.udp && o.threads > o.flows)
    return usage_error("--threads " + std::to_string(o.threads) + " needs at least as many --flows (" +
                       std::to_string(o.flows) + ")");
  if (!o.udp && o.mode == LoadOptions::Mode::Closed && o.concurrency < o.threads)
    return usage_error("--load closed:" + std::to_string(o.concurrency) + " needs at least as many in flight as --threads");
  if (!o.request_file.empty()) {
    std::ifstream f(o.request_file, std::ios::binary);
    if (!f) return usage_error("--request: cannot read " + o.request_file + ": " + std::strerror(errno));
    if (f.peek() == std::char_traits<char>::eof()) return usage_error("--request: " + o.request_file + " is empty");
  }
  // Before anything starts: a report that cannot be written is known now, not after the run.
  try {
    if (!o.json_path.empty()) rp::cli::check_writable(o.json_path);
    if (!o.junit_path.empty()) rp::cli::check_writable(o.junit_path);
  } catch (const rp::cli::OutputError& e) {
    std::fprintf(stderr, "reuseport-check: deploy: %s\n", e.what());
    return 2;
  }
  if (kernels.empty() && !(images.empty() && debs.empty())) kernels = "none";
  if (!kernels.empty()) {
    if (o.host_net) return usage_error("--host-net and --kernels are exclusive: each guest is its own machine");
    return across_kernels(args, kernels, guest_paths, jobs, python, o);
  }
  if (!guest_paths.empty() || !modules.empty() || !names.empty())
    return usage_error("--guest-path, --modules and --kernel-name need --kernels, --kernel-image or --kernel-deb");
  std::string missing;
  if (!rp::cli::has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: deploy needs root (a network namespace, the BPF probe); missing:%s\n", missing.c_str());
    return 2;
  }
  return deploy::run(o);
}

}  // namespace rp::cli
