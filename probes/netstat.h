// SNMP counters of the calling thread's network namespace, from /proc/net/netstat
// (TcpExt, IpExt, MPTcpExt) and /proc/net/snmp (Ip, Icmp, Tcp, Udp, ...).
//
// Keys are "Group.Name" ("TcpExt.ListenOverflows", "Tcp.OutRsts"). A counter the running
// kernel does not have is absent from the map, never 0: TCPMigrateReqSuccess exists from
// 5.14 on, for example.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rp::probes::netstat {

using Counters = std::map<std::string, std::uint64_t, std::less<>>;
// after - before; a gauge (Tcp.CurrEstab) may go down, hence signed.
using Deltas = std::map<std::string, std::int64_t, std::less<>>;

class NetstatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses the /proc/net/{netstat,snmp} format: pairs of lines "Group: name name ..." and
// "Group: value value ...". Negative values (Tcp.MaxConn is -1) are kept in two's
// complement. Throws NetstatError naming the group and line on a malformed pair.
Counters parse(std::string_view text);

// Reads both files of the calling thread's namespace (/proc/thread-self/net, so a thread
// that entered another namespace with setns() reads that one). Throws NetstatError with
// the path and errno text.
Counters read_current();

// Keys present in both; absent from either -> absent here.
Deltas delta(const Counters& before, const Counters& after);

// One counter: nullopt when this kernel does not have it.
std::optional<std::uint64_t> get(const Counters& c, std::string_view group, std::string_view name);
std::optional<std::int64_t> get(const Deltas& d, std::string_view group, std::string_view name);

// The UDP MIB of the calling thread's namespace for one address family: Udp.* from
// /proc/net/snmp, or for IPv6 Udp6* from /proc/net/snmp6 (one "Udp6Name value" pair a
// line, a format parse() does not read). NoPorts: no socket on the port; RcvbufErrors: the
// receive buffer was full; InErrors: every receive error, RcvbufErrors and checksum errors
// included. Throws NetstatError when the file cannot be read or a counter is absent.
struct UdpMib {
  std::uint64_t no_ports = 0, rcvbuf_errors = 0, in_errors = 0;
};
UdpMib read_udp_mib(bool ipv6);

}  // namespace rp::probes::netstat
