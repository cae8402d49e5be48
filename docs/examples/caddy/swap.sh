#!/bin/sh
# The two-instance swap: start instance b on the same port (SO_REUSEPORT), wait until it
# listens, then stop instance a (`caddy stop` through its admin socket), which closes its
# listener: whatever is queued on it then is reset.
# With `kill` as the first argument, a is stopped (SIGSTOP) for 0.3 s, as a process too busy
# to accept is, then SIGKILLed, as an impatient deploy does: what its queue holds is reset.
# With `migrate`, net.ipv4.tcp_migrate_req=1 first (5.14+, per network namespace: the
# deploy's own): the kernel moves what is queued on a's closing listener to b's instead.
set -eu
[ "${1:-}" = migrate ] && sysctl -qw net.ipv4.tcp_migrate_req=1
here=$(cd "$(dirname "$0")" && pwd)
"$here/start.sh" b
a="$RP_WORKDIR/caddy-a"
old=$(cat "$a/caddy.pid")
if [ "${1:-}" = kill ]; then
  kill -STOP "$old"
  sleep 0.3
  kill -KILL "$old"
else
  HOME="$a" XDG_DATA_HOME="$a" XDG_CONFIG_HOME="$a" /usr/bin/caddy stop --address "unix/$a/admin.sock" >"$a/stop.log" 2>&1
fi
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
