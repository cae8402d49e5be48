#!/bin/sh
# caddy reload: the running instance loads the config again through its admin socket. It
# opens a new listening socket for the new config (SO_REUSEPORT lets both exist) and closes
# the old one: `deploy` counts one listener close per reload (results/servers/servers.json),
# so whatever is queued on the old socket at that moment is reset.
set -eu
dir="$RP_WORKDIR/caddy-a"
export HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir"
/usr/bin/caddy reload --config "$dir/Caddyfile" --adapter caddyfile --address "unix/$dir/admin.sock" --force \
  >"$dir/reload.log" 2>&1
