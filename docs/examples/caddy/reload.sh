#!/bin/sh
# caddy reload: the running instance loads the config again through its admin socket; its
# listeners are kept (the same socket serves the new config), so nothing closes.
set -eu
dir="$RP_WORKDIR/caddy-a"
export HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir"
/usr/bin/caddy reload --config "$dir/Caddyfile" --adapter caddyfile --address "unix/$dir/admin.sock" --force \
  >"$dir/reload.log" 2>&1
