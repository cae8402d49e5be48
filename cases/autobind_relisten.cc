// autobind_relisten
//
// A listener whose port the kernel chose (bind() to port 0, or listen() without bind())
// loses that port on shutdown(SHUT_RDWR): inet_shutdown() -> tcp_disconnect() ->
// tcp_set_state(TCP_CLOSE) unhashes it and, since SOCK_BINDPORT_LOCK is set only by a
// bind() to a nonzero port (inet_bind()), calls inet_put_port(), which sets inet_num to 0
// (net/ipv4/tcp.c, net/ipv4/inet_hashtables.c). listen() again then autobinds
// (inet_csk_listen_start() -> inet_csk_get_port(sk, 0)); inet_csk_find_open_port() asks for
// reuseport_ok=false, so the group's port, still held by the other member, is never picked:
// the socket gets a new port and is alone there. With tcp_migrate_req=1 the shutdown kept
// it in the old group's closed section (reuseport_stop_listen_sock()), and reuseport_alloc()
// -> reuseport_resurrect(sk, old, NULL) gives it a group of its own on the new port
// (333bb73f620e "tcp: Keep TCP_CLOSE sockets in the reuseport group.", 5.14). A listener
// bound to an explicit port keeps it and rejoins (the "bound_port" control, as
// listen_after_shutdown).
//
// Scenario, per variant (family, how A got its port, tcp_migrate_req):
//   1. In a fresh network namespace, set tcp_migrate_req (where the kernel has it). A, with
//      SO_REUSEPORT: "bind0" binds loopback:0, "listen_only" calls listen() without bind()
//      (the wildcard), "bound_port" binds loopback:P. A listens; P is its port. B, with
//      SO_REUSEPORT, binds A's address on P and listens.
//   2. 64 connections to P, one after another; non-blocking accept() on A and B shows which
//      one got each (the client then resets, leaving no TIME_WAIT).
//   3. shutdown(A, SHUT_RDWR); record what getsockname() says (the old port either way:
//      inet_put_port() clears inet_num, not inet_sport). listen(A) again; record the result
//      and A's port.
//   4. 64 connections to P, then 64 to A's new port when it has one: who accepts them.
//   5. Compare with cases/expectations.json.

#include <gtest/gtest.h>

#include <poll.h>

#include <chrono>
#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

enum class How { Bind0, ListenOnly, BoundPort };

struct Variant {
  Family family;
  How how;
  int migrate;

  std::string name() const {
    const char* h = how == How::Bind0 ? "bind0" : how == How::ListenOnly ? "listen_only" : "bound_port";
    return std::string("tcp") + (family == Family::V4 ? "4_" : "6_") + h + "_migrate" + std::to_string(migrate);
  }
};

constexpr uint16_t kBoundPort = 47420;
constexpr int kPerPhase = 64;

struct Phase {
  uint64_t a = 0, b = 0, lost = 0;
};

// Connects kPerPhase times to `target`; counts who accepted each connection.
Phase connect_phase(const Endpoint& target, int a, int b) {
  Phase ph;
  sockaddr_storage ss;
  const socklen_t len = target.to_sockaddr(ss);
  for (int i = 0; i < kPerPhase; ++i) {
    UniqueFd c(static_cast<int>(check_sys(socket(af_of(target.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
    check_sys(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + target.str());
    // connect() returns once the client sent its ACK; the child exists once that ACK was
    // processed, which a starved guest can leave for later (a 5.10 guest counted one
    // connection lost that way): wait for it, up to 1 s x the run's timeout scale.
    uint64_t* counter = &ph.lost;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1) * timeout_scale();
    do {
      for (auto [fd, n] : {std::pair{a, &ph.a}, std::pair{b, &ph.b}}) {
        const int child = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (child >= 0) {
          ::close(child);
          counter = n;
          break;
        }
        // A socket that is not listening (after shutdown) answers EINVAL.
        if (errno != EAGAIN && errno != EINVAL) throw_sys("accept");
      }
      if (counter != &ph.lost) break;
      pollfd pfds[] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      poll(pfds, 2, 10);
    } while (std::chrono::steady_clock::now() < deadline);
    ++*counter;
    const linger abort_close{1, 0};
    check_sys(setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close), "setsockopt SO_LINGER");
  }
  return ph;
}

UniqueFd reuseport_socket(Family f) {
  UniqueFd s(static_cast<int>(check_sys(socket(af_of(f), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket")));
  const int one = 1;
  check_sys(setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  return s;
}

void bind_to(int fd, const Endpoint& e) {
  sockaddr_storage ss;
  const socklen_t len = e.to_sockaddr(ss);
  check_sys(bind(fd, reinterpret_cast<sockaddr*>(&ss), len), "bind " + e.str());
}

nlohmann::json scenario(const Variant& v) {
  const auto migrate = set_migrate_req(v.migrate);

  UniqueFd a = reuseport_socket(v.family);
  if (v.how == How::Bind0) bind_to(a.get(), Endpoint::loopback(v.family, 0));
  if (v.how == How::BoundPort) bind_to(a.get(), Endpoint::loopback(v.family, kBoundPort));
  check_sys(listen(a.get(), 128), "listen A");
  const uint16_t port = local_port(a.get());
  // listen() without bind() sits on the wildcard; connections go to loopback either way.
  const Endpoint group = v.how == How::ListenOnly ? Endpoint::wildcard(v.family, port) : Endpoint::loopback(v.family, port);
  UniqueFd b = reuseport_socket(v.family);
  bind_to(b.get(), group);
  check_sys(listen(b.get(), 128), "listen B");
  const Endpoint to_group = Endpoint::loopback(v.family, port);

  nlohmann::json o;
  const Phase before = connect_phase(to_group, a.get(), b.get());
  o["a_served_before"] = before.a > 0;  // 64 hashed connections all missing A: 2^-64
  o["lost_before"] = before.lost;
  check_sys(shutdown(a.get(), SHUT_RDWR), "shutdown A");
  // inet_put_port() clears inet_num, not inet_sport, which getsockname() reports: the old
  // port shows there even when the socket no longer holds it.
  o["getsockname_after_shutdown_shows_old_port"] = local_port(a.get()) == port;
  o["relisten"] = listen(a.get(), 128) == 0 ? "OK" : errno_name(errno);
  const uint16_t new_port = local_port(a.get());
  o["port_kept_after_relisten"] = new_port == port;

  const Phase old_port = connect_phase(to_group, a.get(), b.get());
  o["a_on_group_port"] = old_port.a;
  o["b_on_group_port"] = old_port.b;
  o["lost_on_group_port"] = old_port.lost;
  Phase own;
  if (new_port != port && new_port != 0) own = connect_phase(Endpoint::loopback(v.family, new_port), a.get(), b.get());
  o["a_on_new_port"] = own.a;
  o["lost_on_new_port"] = own.lost;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (int m : {0, 1})
    for (Family f : {Family::V4, Family::V6})
      for (How h : {How::Bind0, How::ListenOnly, How::BoundPort}) out.push_back({f, h, m});
  return out;
}

RP_CASE(autobind_relisten, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
