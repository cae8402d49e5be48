// bind_conflict_matrix
//
// The whole bind-conflict table, judged against a rule written from the documents, not
// against recorded outcomes. cases/bind_rules.cc keeps one readable row per rule; this case
// runs every combination of addresses, IPV6_V6ONLY, SO_REUSEADDR/SO_REUSEPORT and listening,
// for TCP and UDP, then third and further sockets, and counts the rows the kernel decides
// otherwise than the rule.
//
// The rule (rule_conflicts() below), per pair of sockets on one port:
//   - What an address takes. ipv6(7): an AF_INET6 socket bound to :: without IPV6_V6ONLY
//     takes the IPv4 port as well; with it, IPv6 only; a v4-mapped address (::ffff:a.b.c.d)
//     is the IPv4 address a.b.c.d, and binding one with IPV6_V6ONLY set is EINVAL
//     (__inet6_bind()). A wildcard overlaps every address of the family it takes.
//     inet_rcv_saddr_equal() / ipv6_rcv_saddr_equal() (net/ipv4/inet_connection_sock.c)
//     state the same table.
//   - When overlapping sockets may share. socket(7): SO_REUSEADDR on both, "except when
//     there is an active listening socket bound to the address"; SO_REUSEPORT on both (and
//     the same effective uid, always the case here). inet_bind_conflict() (TCP, also at
//     listen(), where the listening socket is the one that may not be shared) and
//     udp_lib_lport_inuse() (UDP) implement it.
// Kernels that break it: the bhash2 table (28044fc1d495 "net: Add a bhash2 table hashed by
// port and address", 6.1) decided v4-mapped and v6-only wildcard rows wrongly, fixed by
// d9ba99342855 (6.3), aa99e5f87bd5 and c48ef9c4aed3 (6.6-rc2, "tcp: Fix bind() regression for
// v4-mapped-v6 (non-)wildcard address.", not in Debian's 6.1.176), d91ef1e1b55f and
// ea111449501e (6.9); selftest tools/testing/selftests/net/bind_wildcard.c. Every kernel
// from 5.10 to 7.2 also lets a few triples through (TCP's FASTREUSEPORT_STRICT fast path,
// UDP's udp_lib_lport_inuse()): see cases/expectations.json. Such rows are findings, counted
// per variant with the first ones named.
//
// Scenario, per variant (protocol, slice of the matrix), every sequence on a port of its own
// in the case's fresh network namespace, its sockets closed before the next sequence:
//   1. pairs: socket A (one of the 10 address/IPV6_V6ONLY specs, the variant's options,
//      listening or only bound for TCP) is bound, then socket B (every spec, every option
//      set); TCP: B listens if bound, then A listens if it did not yet.
//   2. triples: sockets A, B and C, each of the 8 valid specs with no option or the
//      variant's option (TCP: each listens right after its bind for "_reuseport").
//   3. pair_then_all: a pair of specs without options, then every spec in turn, all held
//      (the order of bind_wildcard.c).
//   4. Each bind() and listen() is compared with the rule applied to the sockets bound (and
//      listening) at that moment, as they really are. Observed: rows, rows_against_rule
//      (decided otherwise than the rule), and the first of those spelled out.

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

// An address and IPV6_V6ONLY, as bound.
struct Spec {
  int af;
  const char* text;
  bool v6only;
};

constexpr std::array<Spec, 10> kSpecs{{
    {AF_INET, "0.0.0.0", false},
    {AF_INET, "127.0.0.1", false},
    {AF_INET6, "::", false},
    {AF_INET6, "::", true},
    {AF_INET6, "::1", false},
    {AF_INET6, "::1", true},
    {AF_INET6, "::ffff:0.0.0.0", false},
    {AF_INET6, "::ffff:0.0.0.0", true},  // EINVAL: v4-mapped on a v6-only socket
    {AF_INET6, "::ffff:127.0.0.1", false},
    {AF_INET6, "::ffff:127.0.0.1", true},  // EINVAL
}};

// Option bits of a socket.
constexpr int kNone = 0, kReuseaddr = 1, kReuseport = 2;

struct Sock {
  Spec spec;
  int opts;
  bool bound = false;
  bool listening = false;
};

std::string describe(const Sock& s) {
  std::string d = s.spec.text;
  if (s.spec.af == AF_INET6) d += s.spec.v6only ? "/v6only" : "/dual";
  if (s.opts & kReuseaddr) d += "+ra";
  if (s.opts & kReuseport) d += "+rp";
  return d;
}

// --- The rule (see the header) ---

enum class Take { None, Any, Loopback };
struct Cover {
  Take v4 = Take::None, v6 = Take::None;
};

bool v4_mapped(const Spec& s) { return s.af == AF_INET6 && std::string(s.text).rfind("::ffff:", 0) == 0; }

Cover cover_of(const Spec& s) {
  const std::string t = s.text;
  if (s.af == AF_INET) return {t == "0.0.0.0" ? Take::Any : Take::Loopback, Take::None};
  if (v4_mapped(s)) return {t == "::ffff:0.0.0.0" ? Take::Any : Take::Loopback, Take::None};
  if (t == "::") return {s.v6only ? Take::None : Take::Any, Take::Any};
  return {Take::None, Take::Loopback};  // ::1 (a specific IPv6 address is IPv6 only)
}

bool takes_overlap(Take a, Take b) {
  return a != Take::None && b != Take::None && (a == Take::Any || b == Take::Any || a == b);
}

bool overlap(const Spec& a, const Spec& b) {
  const Cover x = cover_of(a), y = cover_of(b);
  return takes_overlap(x.v4, y.v4) || takes_overlap(x.v6, y.v6);
}

// Does `n`, binding or starting to listen, conflict with the bound socket `e`?
bool rule_conflicts(const Sock& n, const Sock& e) {
  if (!overlap(n.spec, e.spec)) return false;
  const bool share_reuseaddr = (n.opts & kReuseaddr) && (e.opts & kReuseaddr) && !e.listening;
  const bool share_reuseport = (n.opts & kReuseport) && (e.opts & kReuseport);
  return !(share_reuseaddr || share_reuseport);
}

std::string rule_bind(const Sock& n, const std::vector<Sock*>& others) {
  if (v4_mapped(n.spec) && n.spec.v6only) return "EINVAL";
  for (const Sock* e : others)
    if (e != &n && e->bound && rule_conflicts(n, *e)) return "EADDRINUSE";
  return "OK";
}

std::string rule_listen(const Sock& n, const std::vector<Sock*>& others) {
  for (const Sock* e : others)
    if (e != &n && e->bound && rule_conflicts(n, *e)) return "EADDRINUSE";
  return "OK";
}

// --- Running a sequence against the kernel and the rule side by side ---

struct Tally {
  uint64_t rows = 0, matching = 0;
  nlohmann::json mismatches = nlohmann::json::array();
};

constexpr size_t kMismatchesShown = 12;

class Sequence {
 public:
  Sequence(Proto proto, uint16_t port, Tally& t) : proto_(proto), port_(port), t_(t) {}

  // Adds a socket with its options set; it is not bound yet.
  Sock& add(const Spec& spec, int opts) {
    socks_.push_back(std::make_unique<Sock>(Sock{spec, opts}));
    const int type = (proto_ == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
    fds_.emplace_back(static_cast<int>(check_sys(socket(spec.af, type, 0), "socket")));
    const int fd = fds_.back().get(), one = 1, v6only = spec.v6only ? 1 : 0;
    if (opts & kReuseaddr) check_sys(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), "setsockopt SO_REUSEADDR");
    if (opts & kReuseport) check_sys(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
    if (spec.af == AF_INET6)
      check_sys(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), "setsockopt IPV6_V6ONLY");
    return *socks_.back();
  }

  bool bind(Sock& s) {
    sockaddr_storage ss{};
    socklen_t len;
    if (s.spec.af == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port_);
      inet_pton(AF_INET, s.spec.text, &a->sin_addr);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port_);
      inet_pton(AF_INET6, s.spec.text, &a->sin6_addr);
      len = sizeof *a;
    }
    const std::string expected = rule_bind(s, all());
    const std::string got = ::bind(fd_of(s), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? "OK" : errno_name(errno);
    judge("bind " + describe(s), got, expected);
    s.bound = got == "OK";
    return s.bound;
  }

  bool listen(Sock& s) {
    const std::string expected = rule_listen(s, all());
    const std::string got = ::listen(fd_of(s), 8) == 0 ? "OK" : errno_name(errno);
    judge("listen " + describe(s), got, expected);
    s.listening = got == "OK";
    return s.listening;
  }

 private:
  std::vector<Sock*> all() const {
    std::vector<Sock*> v;
    for (const auto& s : socks_) v.push_back(s.get());
    return v;
  }
  int fd_of(const Sock& s) const {
    for (size_t i = 0; i < socks_.size(); ++i)
      if (socks_[i].get() == &s) return fds_[i].get();
    throw std::logic_error("socket not in this sequence");
  }
  void judge(const std::string& op, const std::string& got, const std::string& expected) {
    ++t_.rows;
    if (got == expected) {
      ++t_.matching;
      return;
    }
    if (t_.mismatches.size() >= kMismatchesShown) return;
    std::string before;
    for (const auto& s : socks_)
      if (s->bound) before += (before.empty() ? "" : ", ") + describe(*s) + (s->listening ? "(L)" : "");
    t_.mismatches.push_back(op + " over [" + before + "]: " + got + ", rule " + expected);
  }

  Proto proto_;
  uint16_t port_;
  Tally& t_;
  std::vector<std::unique_ptr<Sock>> socks_;
  std::vector<UniqueFd> fds_;
};

// --- Variants ---

enum class Slice { Pairs, Triples, PairThenAll };

struct Variant {
  Proto proto;
  Slice slice;
  int opts = kNone;         // pairs: A's options; triples: the option each socket may have
  bool listening = false;   // TCP pairs: A listens before B binds; TCP triples: each listens

  std::string name() const {
    std::string n = proto == Proto::Tcp ? "tcp" : "udp";
    const char* o = opts == kNone ? "none" : opts == kReuseaddr ? "reuseaddr" : opts == kReuseport ? "reuseport" : "both";
    if (slice == Slice::Pairs)
      n += std::string("_pairs_first_") + o + (proto == Proto::Tcp ? (listening ? "_listening" : "_bound") : "");
    else if (slice == Slice::Triples)
      n += std::string("_triples_") + o;
    else
      n += "_pair_then_all";
    return n;
  }
};

class Ports {
 public:
  uint16_t next() { return static_cast<uint16_t>(20000 + (n_++ % 20000)); }

 private:
  uint32_t n_ = 0;
};

std::vector<Spec> valid_specs() {
  std::vector<Spec> v;
  for (const Spec& s : kSpecs)
    if (!(v4_mapped(s) && s.v6only)) v.push_back(s);
  return v;
}

void run_pairs(const Variant& v, Tally& t, Ports& ports) {
  const bool tcp = v.proto == Proto::Tcp;
  for (const Spec& a_spec : kSpecs)
    for (const Spec& b_spec : kSpecs)
      for (int b_opts : {kNone, kReuseaddr, kReuseport, kReuseaddr | kReuseport}) {
        Sequence seq(v.proto, ports.next(), t);
        Sock& a = seq.add(a_spec, v.opts);
        if (!seq.bind(a)) continue;  // the EINVAL specs: judged, nothing to pair with
        if (tcp && v.listening) seq.listen(a);
        Sock& b = seq.add(b_spec, b_opts);
        if (!seq.bind(b) || !tcp) continue;
        seq.listen(b);
        if (!a.listening) seq.listen(a);
      }
}

void run_triples(const Variant& v, Tally& t, Ports& ports) {
  const bool listen = v.proto == Proto::Tcp && v.listening;
  const std::vector<Spec> specs = valid_specs();
  for (const Spec& sa : specs)
    for (int oa : {kNone, v.opts})
      for (const Spec& sb : specs)
        for (int ob : {kNone, v.opts}) {
          // One pair (A, B), then every C: the pair's sockets are rebound for each C.
          for (const Spec& sc : specs)
            for (int oc : {kNone, v.opts}) {
              Sequence seq(v.proto, ports.next(), t);
              Sock& a = seq.add(sa, oa);
              if (seq.bind(a) && listen) seq.listen(a);
              Sock& b = seq.add(sb, ob);
              if (seq.bind(b) && listen) seq.listen(b);
              Sock& c = seq.add(sc, oc);
              if (seq.bind(c) && listen) seq.listen(c);
            }
        }
}

void run_pair_then_all(const Variant& v, Tally& t, Ports& ports) {
  const std::vector<Spec> specs = valid_specs();
  for (const Spec& sa : specs)
    for (const Spec& sb : specs) {
      Sequence seq(v.proto, ports.next(), t);
      seq.bind(seq.add(sa, kNone));
      seq.bind(seq.add(sb, kNone));
      for (const Spec& s : specs) seq.bind(seq.add(s, kNone));
    }
}

nlohmann::json scenario(const Variant& v) {
  Tally t;
  Ports ports;
  switch (v.slice) {
    case Slice::Pairs: run_pairs(v, t, ports); break;
    case Slice::Triples: run_triples(v, t, ports); break;
    case Slice::PairThenAll: run_pair_then_all(v, t, ports); break;
  }
  nlohmann::json o;
  o["rows"] = t.rows;
  o["rows_against_rule"] = t.rows - t.matching;
  o["mismatches_shown"] = t.mismatches;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto p : {Proto::Tcp, Proto::Udp}) {
    for (int o : {kNone, kReuseaddr, kReuseport, kReuseaddr | kReuseport}) {
      if (p == Proto::Tcp) {
        out.push_back({p, Slice::Pairs, o, true});
        out.push_back({p, Slice::Pairs, o, false});
      } else {
        out.push_back({p, Slice::Pairs, o, false});
      }
    }
    // SO_REUSEPORT rows listen (the group's case); SO_REUSEADDR rows only bind, where it
    // shares a TCP port.
    out.push_back({p, Slice::Triples, kReuseport, true});
    out.push_back({p, Slice::Triples, kReuseaddr, false});
    out.push_back({p, Slice::PairThenAll});
  }
  return out;
}

RP_CASE(bind_conflict_matrix, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
