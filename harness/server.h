// Competing reuseport listeners, each in a thread or in a forked process of its own, with an
// accept policy, and the faults a deploy inflicts on them: close(), shutdown(), SIGKILL,
// SIGTERM with drain, a stall.
//
// Every listener's state and counters live in one shared anonymous mapping, so a listener in
// another process reports what it served exactly as a thread does, and its counts survive
// its SIGKILL.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness/socket.h"

namespace rp {

enum class AcceptPolicy {
  Serve,  // accept, read the request, reply with the listener's id, close
  Never,  // never accept: the accept queue fills
  Slow,   // serve, waiting `accept_delay` before each accept
};
enum class Exec { Thread, Process };

const char* to_string(AcceptPolicy p);
const char* to_string(Exec e);

struct ListenerSpec {
  ListenerOptions socket;
  AcceptPolicy policy = AcceptPolicy::Serve;
  Exec exec = Exec::Thread;
  std::chrono::microseconds accept_delay{0};  // Slow
  std::chrono::microseconds work{0};          // busy time per request before the reply
  // A listening socket of the calling process to serve instead of opening one (a hand-over,
  // or several workers sharing one accept queue). The listener takes a duplicate; the
  // caller still owns (and closes) this fd. `socket` then only names the port.
  int inherited_fd = -1;
  // Wait with epoll and EPOLLEXCLUSIVE (4.5) instead of poll(): of several workers sharing
  // one socket, one is woken per connection instead of all (nginx's shared-listener mode).
  bool epoll_exclusive = false;
};

enum class ListenerState : int {
  Starting,
  Listening,
  ShutDown,  // shutdown() done; the socket is still open
  Closed,    // closed by command or after a drain
  Killed,    // its process got SIGKILL
  Stopped,   // stopped at the end of a run
  Failed,    // could not open: see error()
};
const char* to_string(ListenerState s);

class ListenerGroup {
 public:
  explicit ListenerGroup(size_t capacity = 64);
  ~ListenerGroup();
  ListenerGroup(const ListenerGroup&) = delete;
  ListenerGroup& operator=(const ListenerGroup&) = delete;

  // Starts a listener and waits until it listens (or throws the error it hit, e.g.
  // "listener 2: bind 127.0.0.1:80: Address already in use (EADDRINUSE)"). Returns its id.
  int add(const ListenerSpec& spec);

  // Faults. Each returns once the listener has done it (or throws after a timeout).
  void close(int id);                   // close() of the listening socket
  void shutdown(int id);                // shutdown(SHUT_RDWR); the fd stays open
  void drain(int id);                   // stop accepting new work: accept and serve what is queued, then close
  void terminate(int id);               // Process: SIGTERM, which the listener handles as drain()
  void kill(int id);                    // Process: SIGKILL
  void stall(int id, std::chrono::milliseconds d);  // stop accepting for d
  void resume(int id) { stall(id, std::chrono::milliseconds(0)); }  // end a stall early
  void stop_all();                      // end of run: stop every listener still running

  ListenerState state(int id) const;
  uint64_t served(int id) const;
  uint64_t accepted(int id) const;
  uint64_t inode(int id) const;
  pid_t pid(int id) const;  // the listener's process (the group's own for threads)
  std::string error(int id) const;
  const ListenerSpec& spec(int id) const;
  std::vector<int> ids() const;
  std::map<int32_t, uint64_t> served_by_listener() const;
  // A duplicate, in this process, of listener id's socket: for a process listener through
  // pidfd_getfd(2) (5.6; needs ptrace rights over it). For a hand-over (inherited_fd) or a
  // REUSEPORT_SOCKARRAY. While the duplicate is open the socket stays in its group, even
  // after the listener closed its own fd.
  UniqueFd listener_fd(int id) const;

  struct Slot;  // shared between processes; defined in server.cc

 private:
  Slot& slot(int id) const;
  void command(int id, int cmd, int64_t arg, std::initializer_list<ListenerState> done);
  void wait_state(int id, std::initializer_list<ListenerState> states, std::chrono::milliseconds timeout) const;
  void reap(int id);

  struct Member {
    ListenerSpec spec;
    int cmd_fd = -1;
    pid_t pid = -1;
    std::thread thread;
    bool reaped = false;
  };
  Slot* slots_ = nullptr;
  size_t capacity_;
  std::vector<std::unique_ptr<Member>> members_;
};

}  // namespace rp
