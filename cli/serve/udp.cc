// `serve --udp`: N members in one reuseport group on the UDP port, one thread each. Every
// wire::FlowRequest gets a wire::FlowReply whose listener field names the member across
// generations: pid << 8 | member index (pids stay below 2^22 on Linux, members below 256),
// so a client (harness/udp_flows.h, `deploy --udp`) sees a flow move from one process to
// another, not only from one index to another.
//
// On SIGTERM or SIGINT, by default every member is closed at once: the datagrams still in
// a member's receive queue are freed with it and never answered (udp_destruct_common(); no
// SNMP counter counts them: cases/udp_close_with_queued). With --drain each member first
// stops taking new flows' datagrams, then answers what its queue holds, then closes.
//
// Why connect(): a member that only reads until its queue is empty stays in the group, so
// datagrams keep arriving and "empty" is a moment, not a state (what lands between the last
// empty read and close() is freed), and a member slower than the arrivals never sees it
// empty at all (measured: --read-delay-us 500 at 5000 datagrams/s drained for the whole
// 30 s deploy timeout). A connected member gets only its own 4-tuple's datagrams
// (acdcecc61285, cases/udp_connected_members): the other flows go to the other members,
// and its queue stays as it was. It is connected to its own address, a 4-tuple no client
// has. A datagram whose socket lookup ran just before the connect may still be queued just
// after it, hence a second empty read after a pause before close(). The drain still ends
// after kDrainLimit, whatever is left.

#include "cli/serve/udp.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "harness/error.h"
#include "harness/fd.h"
#include "harness/wire.h"

namespace rp::cli::serve {
namespace {

constexpr std::chrono::seconds kDrainLimit{2};
// Longer than a softirq's lookup-to-enqueue of one datagram by far.
constexpr std::chrono::milliseconds kLookupRace{20};

UniqueFd open_member(const UdpServeOptions& o) {
  UniqueFd fd(static_cast<int>(
      check_sys(socket(af_of(o.addr.family), SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket udp member")));
  int one = 1;
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  if (o.rcvbuf > 0) {
    int v = static_cast<int>(o.rcvbuf);
    check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &v, sizeof v), "setsockopt SO_RCVBUF");
  }
  sockaddr_storage ss;
  socklen_t len = o.addr.to_sockaddr(ss);
  check_sys(bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind udp " + o.addr.str());
  return fd;
}

// Answers one datagram; false when the queue was empty.
bool answer_one(int fd, uint32_t member, int flags, long delay_us) {
  if (delay_us > 0) usleep(static_cast<useconds_t>(delay_us));
  char buf[2048];
  sockaddr_storage from{};
  socklen_t flen = sizeof from;
  ssize_t n = recvfrom(fd, buf, sizeof buf, flags, reinterpret_cast<sockaddr*>(&from), &flen);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return errno == EINTR;
    throw_sys("recvfrom udp member");
  }
  wire::FlowRequest q;
  if (!wire::parse_flow_request(buf, static_cast<size_t>(n), q)) return true;  // not ours: no answer
  wire::FlowReply r{wire::kFlowReplyMagic, member, q.flow, 0, q.seq};
  // A full send buffer or a client already gone loses the answer, not the member.
  (void)sendto(fd, &r, sizeof r, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), flen);
  return true;
}

}  // namespace

int serve_udp(const UdpServeOptions& o, const std::function<void()>& ready) {
  UniqueFd stop(static_cast<int>(check_sys(eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE), "eventfd")));
  std::vector<UniqueFd> members;
  for (long i = 0; i < o.members; ++i) members.push_back(open_member(o));
  ready();
  const uint32_t pid = static_cast<uint32_t>(getpid());
  std::atomic<bool> drain{false};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (long i = 0; i < o.members; ++i)
    threads.emplace_back([&, i] {
      const int fd = members[static_cast<size_t>(i)].get();
      const uint32_t id = pid << 8 | static_cast<uint32_t>(i);
      try {
        for (;;) {
          pollfd p[2] = {{stop.get(), POLLIN, 0}, {fd, POLLIN, 0}};
          if (poll(p, 2, -1) < 0 && errno != EINTR) throw_sys("poll udp member");
          if (p[0].revents & POLLIN) {
            uint64_t v;
            (void)!read(stop.get(), &v, sizeof v);
            if (drain.load()) {
              sockaddr_storage self{};
              socklen_t len = sizeof self;
              check_sys(getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len), "getsockname udp member");
              check_sys(connect(fd, reinterpret_cast<sockaddr*>(&self), len), "connect udp member to itself");
              const auto end = std::chrono::steady_clock::now() + kDrainLimit;
              for (int pass = 0; pass < 2; ++pass) {
                if (pass) std::this_thread::sleep_for(kLookupRace);
                while (std::chrono::steady_clock::now() < end && answer_one(fd, id, MSG_DONTWAIT, o.read_delay_us)) {
                }
              }
              members[static_cast<size_t>(i)].reset();  // right after the empty read
            }
            return;
          }
          if (p[1].revents & POLLIN) answer_one(fd, id, MSG_DONTWAIT, o.read_delay_us);
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "reuseport-check serve: member %ld: %s\n", i, e.what());
        failed.store(1);
      }
    });
  std::printf("serve: pid %d on udp %s with %ld member%s (member id = pid << 8 | index)\n", static_cast<int>(pid),
              o.addr.str().c_str(), o.members, o.members == 1 ? "" : "s");
  std::fflush(stdout);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  std::printf("serve: pid %d got %s: %s %ld member%s\n", static_cast<int>(pid), strsignal(sig),
              o.drain ? "draining each queue, then closing" : "closing", o.members, o.members == 1 ? "" : "s");
  std::fflush(stdout);
  drain.store(o.drain);
  uint64_t n = threads.size();
  (void)!write(stop.get(), &n, sizeof n);
  for (auto& t : threads) t.join();
  members.clear();  // at once, without reading: what is queued is freed with the sockets
  return failed.load();
}

}  // namespace rp::cli::serve
