#!/bin/sh
# The two-instance swap: start instance b on the same port (SO_REUSEPORT), wait until it
# listens, then stop instance a (`caddy stop` through its admin socket), which closes its
# listener: whatever is queued on it then is reset.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/start.sh" b
a="$RP_WORKDIR/caddy-a"
old=$(cat "$a/caddy.pid")
HOME="$a" XDG_DATA_HOME="$a" XDG_CONFIG_HOME="$a" /usr/bin/caddy stop --address "unix/$a/admin.sock" >"$a/stop.log" 2>&1
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
