#include "probes/reuseport_group.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bpf/reuseport_group.h"
#include "probes/reuseport_probe.h"
#include "reuseport_group.skel.h"

namespace rp::probes {

struct GroupIterator::Impl {
  reuseport_group* skel = nullptr;
  bpf_link* tcp = nullptr;
  bpf_link* udp = nullptr;
  bpf_link* udp_ready = nullptr;
  std::string udp_why;
  ~Impl() {
    bpf_link__destroy(udp_ready);
    bpf_link__destroy(udp);
    bpf_link__destroy(tcp);
    reuseport_group__destroy(skel);
  }
};

namespace {

int err_of(long rc) { return rc < 0 ? static_cast<int>(-rc) : (errno ? errno : EINVAL); }

// open -> rodata -> load. A kernel without the sk_data_ready tracepoint (a recent one)
// still gets the iterators: the object is opened again without the optional program,
// since a libbpf object cannot be loaded twice.
reuseport_group* open_and_load(const GroupIterator::Options& o, bool with_udp_count, int& err) {
  reuseport_group* s = reuseport_group__open();
  if (!s) {
    err = errno;
    return nullptr;
  }
  s->rodata->target_port = o.port;
  s->rodata->target_netns = o.netns_cookie;
  bpf_program__set_autoload(s->progs.rp_group_udp_ready, with_udp_count);
  if (int rc = reuseport_group__load(s)) {
    err = err_of(rc);
    reuseport_group__destroy(s);
    return nullptr;
  }
  return s;
}

}  // namespace

GroupIterator::GroupIterator(const Options& options) : impl_(std::make_unique<Impl>()) {
  auto& im = *impl_;
  int err = 0;
  if (options.count_udp) {
    im.skel = open_and_load(options, true, err);
    if (!im.skel) im.udp_why = std::string("tp_btf/sk_data_ready did not load (") + std::strerror(err) + ")";
  } else {
    im.udp_why = "not requested";
  }
  if (!im.skel) im.skel = open_and_load(options, false, err);
  if (!im.skel) throw ProbeError("bpf: load reuseport_group (iter/tcp, iter/udp)", err);
  im.tcp = bpf_program__attach_iter(im.skel->progs.rp_group_tcp, nullptr);
  if (!im.tcp) throw ProbeError("bpf: attach iter/tcp", errno);
  im.udp = bpf_program__attach_iter(im.skel->progs.rp_group_udp, nullptr);
  if (!im.udp) throw ProbeError("bpf: attach iter/udp", errno);
  if (im.udp_why.empty()) {
    im.udp_ready = bpf_program__attach(im.skel->progs.rp_group_udp_ready);
    if (!im.udp_ready) im.udp_why = std::string("tp_btf/sk_data_ready did not attach (") + std::strerror(errno) + ")";
  }
}

GroupIterator::~GroupIterator() = default;

std::vector<GroupMemberKernel> GroupIterator::read(int protocol) const {
  bpf_link* link = protocol == IPPROTO_UDP ? impl_->udp : impl_->tcp;
  // A new iterator per pass: it walks the namespace of the thread that creates it.
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) throw ProbeError("bpf: create socket iterator", errno);
  std::string bytes;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      throw ProbeError("bpf: read socket iterator", e);
    }
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::vector<GroupMemberKernel> out;
  for (size_t off = 0; off + sizeof(rp_group_member) <= bytes.size(); off += sizeof(rp_group_member)) {
    rp_group_member r;
    std::memcpy(&r, bytes.data() + off, sizeof r);
    GroupMemberKernel m;
    m.cookie = r.cookie;
    m.reuseport = r.reuseport;
    m.has_group = r.has_group;
    m.group = r.group;
    m.reuseport_id = r.reuseport_id;
    m.num_socks = r.num_socks;
    m.num_closed_socks = r.num_closed_socks;
    m.incoming_cpu = r.incoming_cpu;
    m.state = r.state;
    m.has_prog = r.has_prog;
    m.prog_id = r.prog_id;
    m.prog_type = r.prog_type;
    m.prog_attach_type = r.prog_attach_type;
    m.prog_name.assign(r.prog_name, strnlen(r.prog_name, sizeof r.prog_name));
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<std::map<std::uint64_t, std::uint64_t>> GroupIterator::udp_queued() const {
  if (!impl_->udp_ready) return std::nullopt;
  std::map<std::uint64_t, std::uint64_t> out;
  int fd = bpf_map__fd(impl_->skel->maps.rp_udp_queued);
  __u64 key = 0, next = 0;
  __u64* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    __u64 v = 0;
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) out[next] = v;
    key = next;
    prev = &key;
  }
  return out;
}

const std::string& GroupIterator::udp_why() const { return impl_->udp_why; }

std::string prog_type_name(std::uint32_t type) {
  if (const char* s = libbpf_bpf_prog_type_str(static_cast<enum bpf_prog_type>(type))) return s;
  return "type " + std::to_string(type);
}

std::string attach_type_name(std::uint32_t prog_type, std::uint32_t attach_type) {
  if (prog_type != BPF_PROG_TYPE_SK_REUSEPORT) return "";
  if (const char* s = libbpf_bpf_attach_type_str(static_cast<enum bpf_attach_type>(attach_type))) return s;
  return "attach type " + std::to_string(attach_type);
}

}  // namespace rp::probes
