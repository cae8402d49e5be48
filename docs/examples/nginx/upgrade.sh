#!/bin/sh
# nginx binary upgrade ("upgrading the executable on the fly"): USR2 starts a new master
# from the binary, which inherits the listening sockets; WINCH stops the old master's
# workers gracefully; QUIT ends the old master.
set -eu
prefix="$RP_WORKDIR/${1:-a}"
old=$(cat "$prefix/nginx.pid")
kill -USR2 "$old"
# The old master renames its pid file to nginx.pid.oldbin; the new one writes nginx.pid.
while [ ! -s "$prefix/nginx.pid.oldbin" ] || [ ! -s "$prefix/nginx.pid" ] || \
      [ "$(cat "$prefix/nginx.pid")" = "$old" ]; do sleep 0.02; done
new=$(cat "$prefix/nginx.pid")
# Its workers are up once the new master has children.
while [ -z "$(pgrep -P "$new")" ]; do sleep 0.02; done
# The new master is a child of the old one too: it is no old worker.
old_workers=$(pgrep -P "$old" | grep -vx "$new" | tr '\n' ' ')
kill -WINCH "$old"
for pid in $old_workers; do
  while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
done
kill -QUIT "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
