#!/bin/sh
# HAProxy's soft reload: a new process binds the port (SO_REUSEPORT), then -sf asks the old
# one to stop listening and finish its connections. Connections still queued on the old
# process's listening socket when it closes it are reset by the kernel.
# With `seamless` as the first argument: -x takes the listening sockets over from the old
# process through its stats socket, so no listening socket closes at all.
# With `master` (after `start.sh master`): SIGUSR2 to the master of master-worker mode, which
# re-executes itself and starts new workers; waits until the old workers are gone. Whether
# the listening sockets are handed over or bound anew is what the measurement shows
# (listener closes in `deploy`'s kernel account).
set -eu
dir="$RP_WORKDIR/haproxy"
old=$(cat "$dir/haproxy.pid")
case "${1:-}" in
  seamless) /usr/sbin/haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" -x "$dir/admin.sock" -sf $old ;;
  master)
    workers=$(pgrep -P "$old" | tr '\n' ' ')
    kill -USR2 "$old"
    for pid in $workers; do
      while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
    done
    exit 0 ;;
  *) /usr/sbin/haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" -sf $old ;;
esac
for pid in $old; do
  while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
done
