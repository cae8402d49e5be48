// The load generator's protocols beyond Wire: building HTTP requests, parsing HTTP
// responses, and the Worker's handling of Raw and Http streams. The epoll engine that
// drives them is in loadgen.cc.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "harness/clock.h"
#include "harness/loadgen.h"
#include "harness/loadgen_internal.h"

namespace rp {

namespace {

using loadgen_internal::Stream;

constexpr size_t kMaxHttpHead = 64 * 1024;
constexpr std::string_view kLastChunk = "0\r\n\r\n";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Parses the status line and the headers that decide where the body ends. False for
// anything that is not an HTTP/1.x response.
bool parse_http_head(Stream& s, std::string_view head) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return false;
  if (line.size() > 12 && line[12] != ' ') return false;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
    status = status * 10 + (line[i] - '0');
  }
  s.status = status;
  while (eol != std::string_view::npos) {
    size_t start = eol + 2;
    eol = head.find("\r\n", start);
    std::string_view h = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(h.substr(0, colon)), value = trim(h.substr(colon + 1));
    if (iequals(name, "content-length")) {
      int64_t n = 0;
      if (value.empty()) return false;
      for (char ch : value) {
        if (!std::isdigit(static_cast<unsigned char>(ch)) || n > (INT64_MAX - 9) / 10) return false;
        n = n * 10 + (ch - '0');
      }
      s.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      std::string v(value);
      std::transform(v.begin(), v.end(), v.begin(), [](unsigned char ch) { return std::tolower(ch); });
      s.chunked = v.find("chunked") != std::string::npos;
    }
  }
  // RFC 9112 6.3: these have no body whatever the headers say; chunked overrides a length.
  if ((status >= 100 && status < 200) || status == 204 || status == 304) s.content_length = 0;
  else if (s.chunked) s.content_length = -1;
  return true;
}

}  // namespace

const char* to_string(LoadOptions::Protocol p) {
  switch (p) {
    case LoadOptions::Protocol::Wire: return "wire";
    case LoadOptions::Protocol::Raw: return "raw";
    case LoadOptions::Protocol::Http: return "http";
  }
  return "?";
}

std::string http_get_request(const std::string& path, const std::string& host) {
  if (path.empty() || path[0] != '/')
    throw std::invalid_argument("HTTP path must start with '/', got '" + path + "'");
  for (unsigned char ch : path)
    if (ch <= ' ' || ch == 0x7f) throw std::invalid_argument("HTTP path holds whitespace or a control character: '" + path + "'");
  for (unsigned char ch : host)
    if (ch <= ' ' || ch == 0x7f) throw std::invalid_argument("HTTP host holds whitespace or a control character: '" + host + "'");
  return "GET " + path + " HTTP/1.1\r\nHost: " + host +
         "\r\nUser-Agent: reuseport-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
}

void LoadGenerator::Worker::start_stream(uint32_t slot) {
  Conn& c = conns[slot];
  streams[slot] = Stream{};
  // As for Wire: sending at once usually finds the handshake done already.
  if (!stream_send(slot)) return;
  // EPOLLOUT stays armed: a payload larger than the socket buffer goes out in parts.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u32 = slot;
  if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, c.fd, &ev) != 0) finish(slot, Outcome::OtherError, errno);
}

// Sends what is left of the payload; false when that finished the attempt.
bool LoadGenerator::Worker::stream_send(uint32_t slot) {
  Conn& c = conns[slot];
  Stream& s = streams[slot];
  const std::string& p = lg.opts_.payload;
  while (s.sent < p.size()) {
    ssize_t n = send(c.fd, p.data() + s.sent, p.size() - s.sent, MSG_NOSIGNAL);
    if (n > 0) {
      if (c.phase == Phase::Connecting) mark_connected(c);
      s.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    finish(slot, n < 0 ? classify_error(errno, c.phase) : Outcome::OtherError, n < 0 ? errno : EMSGSIZE);
    return false;
  }
  return true;
}

// Takes n received bytes; false when they finished the attempt.
bool LoadGenerator::Worker::stream_consume(uint32_t slot, const char* data, size_t n) {
  Stream& s = streams[slot];
  s.received += n;
  if (lg.opts_.protocol != LoadOptions::Protocol::Http) return true;
  if (!s.headers_done) {
    s.head.append(data, n);
    size_t end = s.head.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (s.head.size() > kMaxHttpHead) {
        finish(slot, Outcome::OtherError, EMSGSIZE);
        return false;
      }
      return true;
    }
    s.headers_done = true;
    if (!parse_http_head(s, std::string_view(s.head).substr(0, end + 2))) {
      finish(slot, Outcome::OtherError, EBADMSG);
      return false;
    }
    data = s.head.data() + end + 4;
    n = s.head.size() - (end + 4);
  }
  s.body += n;
  if (s.chunked) {
    s.tail.append(data, n);
    if (s.tail.size() > kLastChunk.size()) s.tail.erase(0, s.tail.size() - kLastChunk.size());
  }
  if (s.content_length >= 0 && s.body >= static_cast<uint64_t>(s.content_length)) {
    conns[slot].a.http_status = static_cast<uint16_t>(s.status);
    finish(slot, Outcome::Served, 0);
    return false;
  }
  return true;
}

void LoadGenerator::Worker::stream_eof(uint32_t slot) {
  Stream& s = streams[slot];
  bool complete;
  if (lg.opts_.protocol == LoadOptions::Protocol::Http) {
    complete = s.headers_done && s.content_length < 0 && (!s.chunked || s.tail == kLastChunk);
    if (complete) conns[slot].a.http_status = static_cast<uint16_t>(s.status);
  } else {
    complete = s.received > 0;
  }
  finish(slot, complete ? Outcome::Served : Outcome::ClosedWithoutResponse, 0);
}

void LoadGenerator::Worker::on_stream_event(uint32_t slot, uint32_t events) {
  Conn& c = conns[slot];
  if (c.phase == Phase::Connecting) {
    if (!handshake_done(slot, events)) return;
    mark_connected(c);
  }
  if (!stream_send(slot)) return;
  char buf[16384];
  for (;;) {
    ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (!stream_consume(slot, buf, static_cast<size_t>(n))) return;
      continue;
    }
    if (n == 0) {
      stream_eof(slot);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;
    finish(slot, classify_error(errno, Phase::Connected), errno);
    return;
  }
}

}  // namespace rp
