// Parsing and deltas of /proc/net/{netstat,snmp}; a counter the kernel lacks stays absent.
#include <gtest/gtest.h>

#include "probes/netstat.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace rp::probes::netstat {
namespace {

constexpr std::string_view kSample =
    "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPMigrateReqSuccess\n"
    "TcpExt: 0 12 13 9\n"
    "IpExt: InNoRoutes InOctets\n"
    "IpExt: 0 123456789012\n"
    "Tcp: RtoAlgorithm MaxConn OutRsts CurrEstab\n"
    "Tcp: 1 -1 40 3\n";

TEST(NetstatParse, reads_every_group_as_group_dot_name) {
  const Counters c = parse(kSample);
  EXPECT_EQ(get(c, "TcpExt", "ListenOverflows"), 12u);
  EXPECT_EQ(get(c, "TcpExt", "TCPMigrateReqSuccess"), 9u);
  EXPECT_EQ(get(c, "IpExt", "InOctets"), 123456789012u);
  EXPECT_EQ(get(c, "Tcp", "OutRsts"), 40u);
  EXPECT_EQ(c.size(), 10u);
}

TEST(NetstatParse, counter_missing_on_this_kernel_is_absent_not_zero) {
  const Counters c = parse(kSample);
  EXPECT_FALSE(get(c, "TcpExt", "TCPMigrateReqFailure").has_value());
  EXPECT_FALSE(get(c, "MPTcpExt", "MPCapableSYNRX").has_value());
}

TEST(NetstatParse, negative_gauge_round_trips_through_delta) {
  const Counters c = parse(kSample);
  EXPECT_EQ(get(c, "Tcp", "MaxConn"), static_cast<std::uint64_t>(-1));
  EXPECT_EQ(get(delta(c, c), "Tcp", "MaxConn"), 0);
}

TEST(NetstatParse, malformed_input_throws_naming_the_group) {
  EXPECT_THROW(parse("TcpExt: A B\nTcpExt: 1\n"), NetstatError);
  EXPECT_THROW(parse("TcpExt: A B\n"), NetstatError);
  EXPECT_THROW(parse("TcpExt: A\nIpExt: 1\n"), NetstatError);
  EXPECT_THROW(parse("TcpExt: A\nTcpExt: x\n"), NetstatError);
  try {
    parse("TcpExt: A B\nTcpExt: 1\n");
  } catch (const NetstatError& e) {
    EXPECT_NE(std::string(e.what()).find("TcpExt"), std::string::npos) << e.what();
  }
}

TEST(NetstatDelta, subtracts_common_keys_and_drops_the_rest) {
  const Counters before = parse("TcpExt: A B\nTcpExt: 5 7\nTcp: CurrEstab\nTcp: 4\n");
  const Counters after = parse("TcpExt: A C\nTcpExt: 8 1\nTcp: CurrEstab\nTcp: 2\n");
  const Deltas d = delta(before, after);
  EXPECT_EQ(get(d, "TcpExt", "A"), 3);
  EXPECT_FALSE(get(d, "TcpExt", "B").has_value());
  EXPECT_FALSE(get(d, "TcpExt", "C").has_value());
  EXPECT_EQ(get(d, "Tcp", "CurrEstab"), -2);
}

TEST(NetstatRead, current_namespace_has_the_classic_counters) {
  const Counters c = read_current();
  EXPECT_TRUE(get(c, "TcpExt", "ListenOverflows").has_value());
  EXPECT_TRUE(get(c, "TcpExt", "ListenDrops").has_value());
  EXPECT_TRUE(get(c, "Tcp", "OutRsts").has_value());
}

// A datagram to a port with no socket in a namespace of the test's own counts in NoPorts
// of that namespace, IPv4 in /proc/net/snmp and IPv6 in /proc/net/snmp6; the same read
// before the send and after can therefore tell a wrong file or field from the right one.
TEST(NetstatRead, udp_mib_counts_a_datagram_to_no_socket) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace of its own)";
  std::thread t([] {
    ASSERT_EQ(unshare(CLONE_NEWNET), 0);
    // lo up, without the harness: SIOCSIFFLAGS on a throw-away socket.
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "lo");
    ASSERT_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    ASSERT_EQ(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
    for (bool v6 : {false, true}) {
      const UdpMib before = read_udp_mib(v6);
      int c = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
      sockaddr_storage ss{};
      socklen_t len;
      if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(9);
        len = sizeof *a;
      } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(9);
        len = sizeof *a;
      }
      ASSERT_EQ(sendto(c, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len), 1);
      close(c);
      const UdpMib after = read_udp_mib(v6);
      EXPECT_EQ(after.no_ports - before.no_ports, 1u) << (v6 ? "Udp6" : "Udp");
      EXPECT_EQ(after.rcvbuf_errors, before.rcvbuf_errors);
    }
    close(s);
  });
  t.join();
}

}  // namespace
}  // namespace rp::probes::netstat
