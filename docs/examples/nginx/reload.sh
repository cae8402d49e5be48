#!/bin/sh
# nginx reload: HUP to the master, which starts new workers with the new configuration and
# asks the old ones to finish gracefully (QUIT). Waits until the old workers are gone.
set -eu
prefix="$RP_WORKDIR/${1:-a}"
master=$(cat "$prefix/nginx.pid")
old=$(pgrep -P "$master" | tr '\n' ' ')
kill -HUP "$master"
for pid in $old; do
  while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
done
