// time_wait_rebind
//
// A server restarted right after its listener closed finds the port held by the TIME_WAIT
// sockets of the connections it closed first. They keep the listener's flags
// (tw_reuse, tw_reuseport), and inet_bind_conflict() (net/ipv4/inet_connection_sock.c)
// lets a new socket bind over a TIME_WAIT socket when both have SO_REUSEPORT (the uid is
// not compared for TIME_WAIT), or both have SO_REUSEADDR; a socket with neither, or with
// SO_REUSEADDR over a listener that had only SO_REUSEPORT, gets EADDRINUSE. A listener
// with neither option leaves TIME_WAIT sockets that nothing may bind over (socket(7):
// SO_REUSEADDR must be on both, and the TIME_WAIT socket has the listener's). A wildcard
// listener's connections sit on the loopback address, which the wildcard overlaps
// (inet_rcv_saddr_equal()), so the same rules hold there. The TIME_WAIT sockets are in the
// bhash2 table since 936a192f9740 "tcp: Add TIME_WAIT sockets in bhash2." (6.2-rc3, stable
// 6.1.y; before it, 6.1 let a bind over a TIME_WAIT socket pass); its selftest tools/testing/
// selftests/net/bind_timewait.c states the same for 127.0.0.1 and 0.0.0.0.
//
// Scenario, per variant (family, the listener's options, loopback or "_any" wildcard):
//   1. In a fresh network namespace, listen on loopback:P (the wildcard for "_any_") with
//      SO_REUSEPORT and/or SO_REUSEADDR as the variant names them ("_plain": neither).
//   2. Connect one client, accept it, close the server side first, then the client: the
//      server's end goes to TIME_WAIT on port P. Wait until /proc/net/tcp[6] (this
//      namespace's) shows it there.
//   3. Close the listener. Count what holds P now: TIME_WAIT sockets and listeners.
//   4. Try, each with a fresh socket closed right after, on the listener's address: bind()
//      without options, with SO_REUSEADDR, with SO_REUSEPORT (and listen() on the last).
//      Record "OK" or the errno.
//   5. Compare with cases/expectations.json.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/sockdiag.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

constexpr uint16_t kPort = 47330;

struct Variant {
  Family family;
  bool listener_reuseaddr;
  bool listener_reuseport = true;
  bool wildcard = false;  // the listener and the rebinds on 0.0.0.0 / ::, not loopback

  // The first names (loopback, SO_REUSEPORT) are kept as committed results name them.
  std::string name() const {
    std::string opts = listener_reuseport ? (listener_reuseaddr ? "reuseport_reuseaddr" : "reuseport")
                                          : (listener_reuseaddr ? "reuseaddr" : "plain");
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (wildcard ? "_any" : "") + "_listener_" + opts;
  }
  Endpoint addr() const { return wildcard ? Endpoint::wildcard(family, kPort) : Endpoint::loopback(family, kPort); }
};

// TIME_WAIT sockets (state 06) whose local port is `port`, from the namespace's
// /proc/net/tcp or tcp6.
uint64_t time_wait_on_port(Family f, uint16_t port) {
  const std::string path = f == Family::V4 ? "/proc/thread-self/net/tcp" : "/proc/thread-self/net/tcp6";
  std::ifstream in(path);
  if (!in) throw SysError("open " + path, errno);
  std::string line;
  std::getline(in, line);  // header
  uint64_t n = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string sl, local, remote, state;
    ls >> sl >> local >> remote >> state;
    const auto colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == port && state == "06") ++n;
  }
  return n;
}

std::string try_bind(const Endpoint& addr, bool reuseaddr, bool reuseport, bool then_listen) {
  ListenerOptions o;
  o.addr = addr;
  o.reuseaddr = reuseaddr;
  o.reuseport = reuseport;
  o.listen = then_listen;
  try {
    UniqueFd fd = open_listener(o);
    return "OK";
  } catch (const SysError& e) {
    if (e.op().rfind("bind", 0) != 0 && e.op().rfind("listen", 0) != 0) throw;
    return errno_name(e.err());
  }
}

nlohmann::json scenario(const Variant& v) {
  ListenerOptions lo;
  lo.addr = v.addr();
  lo.reuseaddr = v.listener_reuseaddr;
  lo.reuseport = v.listener_reuseport;
  lo.nonblocking = false;
  UniqueFd listener = open_listener(lo);

  UniqueFd client(static_cast<int>(check_sys(socket(af_of(v.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
  sockaddr_storage ss;
  const Endpoint to = Endpoint::loopback(v.family, kPort);
  const socklen_t len = to.to_sockaddr(ss);
  check_sys(connect(client.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + to.str());
  UniqueFd served(static_cast<int>(check_sys(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept")));
  // The side that closes first ends in TIME_WAIT: make it the server's, on port P.
  served.reset();
  char c;
  check_sys(recv(client.get(), &c, 1, 0), "recv the server's FIN");
  client.reset();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (time_wait_on_port(v.family, kPort) == 0) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the server's connection did not reach TIME_WAIT on port " + std::to_string(kPort));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  listener.reset();

  nlohmann::json o;
  o["time_wait_on_port"] = time_wait_on_port(v.family, kPort);
  o["listeners_on_port"] = tcp_listeners(kPort).size();
  o["bind_plain"] = try_bind(v.addr(), false, false, false);
  o["bind_reuseaddr"] = try_bind(v.addr(), true, false, false);
  o["bind_reuseport"] = try_bind(v.addr(), false, true, false);
  o["listen_reuseport"] = try_bind(v.addr(), false, true, true);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Family f : {Family::V4, Family::V6})
    for (bool ra : {false, true}) out.push_back({f, ra});
  // Listeners without SO_REUSEPORT, then the wildcard: appended, so the first four keep
  // their names and places.
  for (Family f : {Family::V4, Family::V6})
    for (bool ra : {false, true}) out.push_back({f, ra, false});
  for (Family f : {Family::V4, Family::V6})
    for (bool rp : {true, false})
      for (bool ra : {false, true}) out.push_back({f, ra, rp, true});
  return out;
}

RP_CASE(time_wait_rebind, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
