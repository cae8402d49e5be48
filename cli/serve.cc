// `reuseport-check serve`: a small SO_REUSEPORT server of the project's own, so that a
// deploy can be tried with both outcomes (docs/deploy.md). N workers, each with a listener
// of its own in the port's reuseport group. On SIGTERM or SIGINT it closes every listener
// at once, like a naive server: children still in a listener's accept queue are reset,
// unless net.ipv4.tcp_migrate_req=1 hands them to another listener of the group. --drain
// first accepts and serves what is queued, which narrows that window but cannot close it:
// a child can still land between the last accept() and close().
//
// The default protocol is the harness's own (harness/wire.h, what `deploy` sends when given
// no --request or --http), served by a ListenerGroup; --http answers any request with a
// 200 and `Connection: close`. --udp serves UDP flows instead (cli/serve/udp.cc).

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <optional>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/serve/udp.h"
#include "harness/error.h"
#include "harness/server.h"
#include "harness/socket.h"

namespace rp::cli {

namespace {

constexpr const char* kServeDescription =
    "A small SO_REUSEPORT server: N workers, each with its own listener on the port. Runs\n"
    "until SIGTERM or SIGINT, then closes all its listeners at once, as a naive server does:\n"
    "connections still waiting in a listener's accept queue are reset by the kernel, unless\n"
    "net.ipv4.tcp_migrate_req=1 lets it move them to another listener of the port.\n"
    "With --udp: N members of one UDP group answering `deploy --udp`'s flow requests; closing\n"
    "frees what their receive queues hold, unless --drain answers it first.";

constexpr const char* kServeFooter = R"FOOTER(Exit status: 0 after SIGTERM or SIGINT; 1 when closing failed; 2 on bad usage or when the
listeners cannot be opened (port in use without SO_REUSEPORT, address not here).

Examples:
  reuseport-check serve --port 8080 --workers 4 --pidfile /tmp/gen1.pid
  reuseport-check serve --udp --port 8053 --workers 2 --drain --pidfile /tmp/gen1.pid
  reuseport-check deploy --port 8080 \
      --start "$PWD/docs/examples/serve/start.sh" --deploy "$PWD/docs/examples/serve/swap.sh"
)FOOTER";

struct Options {
  int port = -1;
  std::string host = "127.0.0.1";
  bool http = false, drain = false, udp = false;
  long workers = 2, backlog = 128, accept_delay_ms = 0, rcvbuf = 0, read_delay_us = 0;
  std::string pidfile;
};

void write_pidfile(const std::string& path) {
  // Written whole under another name and renamed, so a script polling for it never
  // reads half a pid.
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) throw_sys("open " + tmp);
  std::fprintf(f, "%d\n", static_cast<int>(getpid()));
  if (std::fclose(f) != 0) throw_sys("write " + tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw_sys("rename " + tmp + " to " + path);
}

// The --http workers. Not a ListenerGroup policy: the group serves only the harness's own
// protocol, and an HTTP worker needs nothing of its bookkeeping.
class HttpWorkers {
 public:
  HttpWorkers(const ListenerOptions& lo, long n, long accept_delay_ms) : delay_ms_(accept_delay_ms) {
    stop_.reset(static_cast<int>(check_sys(eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE), "eventfd")));
    for (long i = 0; i < n; ++i) listeners_.push_back(open_listener(lo));
    for (long i = 0; i < n; ++i) threads_.emplace_back([this, i] { run(static_cast<int>(i)); });
  }
  ~HttpWorkers() { stop(false); }

  void stop(bool drain) {
    if (threads_.empty()) return;
    drain_.store(drain);
    uint64_t n = threads_.size();
    (void)!write(stop_.get(), &n, sizeof n);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  static void serve(int c, int worker) {
    timeval tv{2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
      ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string body = "served by worker " + std::to_string(worker) + " of pid " + std::to_string(getpid()) + "\n";
    std::string r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body;
    size_t off = 0;
    while (off < r.size()) {
      ssize_t n = send(c, r.data() + off, r.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  // Accepts one connection and serves it; false when the queue is empty.
  bool accept_one(int lfd, int worker) {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    int c = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    serve(c, worker);
    ::close(c);
    return true;
  }

  void run(int worker) {
    int lfd = listeners_[worker].get();
    for (;;) {
      pollfd p[2] = {{stop_.get(), POLLIN, 0}, {lfd, POLLIN, 0}};
      if (poll(p, 2, -1) < 0 && errno != EINTR) break;
      if (p[0].revents & POLLIN) {
        uint64_t v;
        (void)!read(stop_.get(), &v, sizeof v);
        if (drain_.load())
          while (accept_one(lfd, worker)) {
          }
        break;
      }
      if (p[1].revents & POLLIN) accept_one(lfd, worker);
    }
    listeners_[worker].reset();
  }

  long delay_ms_;
  UniqueFd stop_;
  std::atomic<bool> drain_{false};
  std::vector<UniqueFd> listeners_;
  std::vector<std::thread> threads_;
};

}  // namespace

int serve_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  Options o;
  auto app = rp::cli::make_app("serve", kServeDescription, kServeFooter);
  app->add_option("--port", o.port, "The port (1-65535)")->required()->check(CLI::Range(1, 65535));
  app->add_option("--host", o.host, "The address to listen on (default 127.0.0.1; '::1' for IPv6)")
      ->type_name("ADDR");
  auto* http_opt = app->add_flag("--http",
                o.http, "Answer HTTP requests (200, a short body, Connection: close) instead of the harness protocol that "
                        "`deploy` uses by default");
  app->add_option("--workers", o.workers, "Listeners, one thread each (default 2)")->check(CLI::Range(1, 256));
  auto* backlog_opt = app->add_option("--backlog", o.backlog, "listen() backlog of each listener (default 128)")->check(CLI::Range(1, 1 << 20));
  auto* delay_opt = app->add_option("--accept-delay-ms", o.accept_delay_ms,
                  "Wait MS milliseconds before each accept(): a slow server, whose accept queues fill under load")
      ->type_name("MS")
      ->check(CLI::Range(0, 60000));
  app->add_flag("--drain", o.drain,
                "On SIGTERM, first accept and serve what is queued, then close (--udp: answer what each member's "
                "receive queue holds after connecting it to itself (so no other flow's datagram reaches it) until it is "
                "empty, at most 2 s, then close that member)");
  app->add_flag("--udp", o.udp,
                "UDP instead of TCP: --workers members in one reuseport group, each answering the UDP flow "
                "requests of `deploy --udp` with a reply naming the member (pid << 8 | index)")
      ->excludes(http_opt)
      ->excludes(backlog_opt)
      ->excludes(delay_opt);
  app->add_option("--rcvbuf", o.rcvbuf, "With --udp: SO_RCVBUF of each member in bytes (default: the kernel's)")
      ->type_name("BYTES")
      ->check(CLI::Range(1, 1 << 30));
  app->add_option("--read-delay-us", o.read_delay_us,
                  "With --udp: wait US microseconds before each read: a slow server, whose receive queues fill under load")
      ->type_name("US")
      ->check(CLI::Range(0, 1000000));
  app->add_option("--pidfile", o.pidfile,
                  "Write the process id to PATH once every listener listens (so a deploy script knows when the new "
                  "generation is ready); removed at exit")
      ->type_name("PATH")
      ->check(CLI::Validator([](std::string& v) { return v.empty() ? std::string("needs a path") : std::string(); }, ""));
  if (auto rc = rp::cli::parse(*app, args)) return *rc;

  ListenerOptions lo;
  lo.addr.family = o.host.find(':') != std::string::npos ? Family::V6 : Family::V4;
  lo.addr.host = o.host;
  lo.addr.port = static_cast<uint16_t>(o.port);
  lo.backlog = static_cast<int>(o.backlog);
  try {
    sockaddr_storage ss;
    lo.addr.to_sockaddr(ss);
  } catch (const std::exception&) {
    return rp::cli::usage_error("--host needs an IPv4 or IPv6 address, got '" + o.host + "'");
  }

  if ((o.rcvbuf > 0 || o.read_delay_us > 0) && !o.udp)
    return rp::cli::usage_error(std::string(o.rcvbuf > 0 ? "--rcvbuf" : "--read-delay-us") + " needs --udp");

  // Blocked before any worker thread exists, so that every thread inherits the mask and
  // the signals wait for sigwait() below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  if (o.udp) {
    try {
      const int rc = serve::serve_udp({lo.addr, o.workers, o.drain, o.rcvbuf, o.read_delay_us}, [&] {
        if (!o.pidfile.empty()) write_pidfile(o.pidfile);
      });
      if (!o.pidfile.empty()) unlink(o.pidfile.c_str());
      return rc;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "reuseport-check serve: %s\n", e.what());
      if (!o.pidfile.empty()) unlink(o.pidfile.c_str());
      return 2;
    }
  }
  std::optional<ListenerGroup> group;
  std::optional<HttpWorkers> http;
  try {
    if (o.http) {
      http.emplace(lo, o.workers, o.accept_delay_ms);
    } else {
      group.emplace();
      ListenerSpec spec;
      spec.socket = lo;
      if (o.accept_delay_ms > 0) {
        spec.policy = AcceptPolicy::Slow;
        spec.accept_delay = std::chrono::milliseconds(o.accept_delay_ms);
      }
      for (long i = 0; i < o.workers; ++i) group->add(spec);
    }
    if (!o.pidfile.empty()) write_pidfile(o.pidfile);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check serve: %s\n", e.what());
    return 2;
  }
  std::printf("serve: pid %d listening on %s with %ld worker%s (%s)\n", static_cast<int>(getpid()),
              lo.addr.str().c_str(), o.workers, o.workers == 1 ? "" : "s", o.http ? "http" : "harness protocol");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  std::printf("serve: pid %d got %s: %s %ld listener%s\n", static_cast<int>(getpid()), strsignal(sig),
              o.drain ? "draining, then closing" : "closing", o.workers, o.workers == 1 ? "" : "s");
  std::fflush(stdout);
  int rc = 0;
  try {
    if (http) {
      http->stop(o.drain);
    } else {
      for (int id : group->ids()) o.drain ? group->drain(id) : group->close(id);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check serve: %s\n", e.what());
    rc = 1;
  }
  if (!o.pidfile.empty()) unlink(o.pidfile.c_str());
  return rc;
}

}  // namespace rp::cli
