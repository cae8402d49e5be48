#!/bin/sh
# HAProxy's soft reload: a new process binds the port (SO_REUSEPORT), then -sf asks the old
# one to stop listening and finish its connections. Connections still queued on the old
# process's listening socket when it closes it are reset by the kernel.
# With `seamless` as the first argument: -x takes the listening sockets over from the old
# process through its stats socket, so no listening socket closes at all.
set -eu
dir="$RP_WORKDIR/haproxy"
old=$(cat "$dir/haproxy.pid")
if [ "${1:-}" = seamless ]; then
  /usr/sbin/haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" -x "$dir/admin.sock" -sf $old
else
  /usr/sbin/haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" -sf $old
fi
for pid in $old; do
  while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
done
