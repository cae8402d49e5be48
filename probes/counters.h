// The kernel counters reuseport-check reports, each defined once: its key (the same in the
// cases' records, `watch`, `deploy` and `report`), the label people read, and where it comes
// from. In the spirit of the kernel's snmp4_net_list[]: adding a counter is one row in
// counters.cc (plus, for a probe counter, the field in struct rp_counters and its
// increment in bpf/reuseport_probe.bpf.c).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace rp::probes {

struct CounterDef {
  enum class From {
    Probe,   // a field of struct rp_counters (bpf/reuseport_probe.h), at `offset`
    Drop,    // kfree_skb drops of the port with reason `name` (as the kernel spells it)
    TcpExt,  // /proc/net/netstat TcpExt.`name`, delta over the observation
    Sum,     // the sum of the rows `name` and `name2`, null when either is
  };
  // What a probe row needs the running kernel to have attached; without it the row is
  // "not observable here", never 0.
  enum class Needs { Nothing, MigrateFexit, DropReason };

  const char* key;     // kernel_orphan_resets, netstat_listen_overflows
  const char* label;   // "RSTs those orphans sent"
  From from;
  std::size_t offset;  // From::Probe
  const char* name;    // From::Drop, From::TcpExt, From::Sum
  const char* name2;   // From::Sum
  const char* source;  // From::Probe: the event and the condition counted; otherwise a note
  Needs needs;
};

// Every row, in report order.
const std::vector<CounterDef>& counter_table();

// The row with this key; nullptr when there is none.
const CounterDef* find_counter(std::string_view key);

}  // namespace rp::probes
