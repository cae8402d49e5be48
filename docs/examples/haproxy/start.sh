#!/bin/sh
# Starts HAProxy (daemonized) on $RP_PORT with its config, pid file and stats socket in
# $RP_WORKDIR/haproxy. `reuseport-check deploy` finds and stops it at the end.
# With `master` as the first argument: master-worker mode (-W), in which the master
# re-executes itself on SIGUSR2 (reload.sh master); the pid file then holds the master's pid.
set -eu
dir="$RP_WORKDIR/haproxy"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
sed -e "s|@PORT@|$RP_PORT|g" -e "s|@DIR@|$dir|g" "$here/haproxy.cfg.in" > "$dir/haproxy.cfg"
if [ "${1:-}" = master ]; then
  exec /usr/sbin/haproxy -W -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid"
fi
exec /usr/sbin/haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid"
