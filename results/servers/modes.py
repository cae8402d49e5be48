"""The reload and upgrade modes of real servers that results/servers/measure.py deploys, one
per line: (id, server, mode, what the procedure does to the listening sockets, start
command, deploy command). The commands are docs/examples/'s, relative to the repository
root; measure.py makes them absolute. `sockets` is what the procedure is built to do, read
from the server's documentation and the example's comments; the measured listener closes
(the probe's count) are stored beside it, so the two can be compared.
"""

MODES = [
    ("nginx_reload", "nginx", "reload (HUP)", "kept", "docs/examples/nginx/start.sh", "docs/examples/nginx/reload.sh"),
    ("nginx_upgrade", "nginx", "binary upgrade (USR2, WINCH, QUIT)", "kept", "docs/examples/nginx/start.sh", "docs/examples/nginx/upgrade.sh"),
    ("nginx_swap", "nginx", "two-instance swap (start B, QUIT A)", "closed", "docs/examples/nginx/start.sh", "docs/examples/nginx/swap.sh"),
    ("nginx_swap_busy", "nginx", "two-instance swap, A's workers busy 0.3 s", "closed", "docs/examples/nginx/start.sh", "docs/examples/nginx/swap.sh busy"),
    ("haproxy_reload", "HAProxy", "soft reload (-sf)", "closed", "docs/examples/haproxy/start.sh", "docs/examples/haproxy/reload.sh"),
    ("haproxy_seamless", "HAProxy", "seamless reload (-x, expose-fd listeners, -sf)", "kept", "docs/examples/haproxy/start.sh", "docs/examples/haproxy/reload.sh seamless"),
    # The master adds -x itself on a reload when a stats socket has `expose-fd listeners`
    # (HAProxy's master-worker commit message, 1.8), as haproxy.cfg.in's has.
    ("haproxy_master", "HAProxy", "master-worker reload (-W, USR2)", "kept", "docs/examples/haproxy/start.sh master", "docs/examples/haproxy/reload.sh master"),
    ("caddy_reload", "Caddy", "reload (admin API)", "closed", "docs/examples/caddy/start.sh", "docs/examples/caddy/reload.sh"),
    ("caddy_swap", "Caddy", "two-instance swap (start b, caddy stop a)", "closed", "docs/examples/caddy/start.sh", "docs/examples/caddy/swap.sh"),
    ("caddy_swap_migrate", "Caddy", "two-instance swap, tcp_migrate_req=1", "closed", "docs/examples/caddy/start.sh", "docs/examples/caddy/swap.sh migrate"),
]

# UDP servers, measured apart (`measure --udp`, results/servers/servers_udp.json): DNS
# queries for a.test (`deploy --udp --udp-request dns:a.test`), which the example's local
# zone answers; `sockets` is what the procedure does to the server's SO_REUSEPORT sockets.
UDP_MODES = [
    ("unbound_restart", "unbound", "restart (TERM, then start again)", "closed", "docs/examples/unbound/start.sh", "docs/examples/unbound/restart.sh"),
    ("unbound_reload", "unbound", "reload (HUP)", "kept", "docs/examples/unbound/start.sh", "docs/examples/unbound/reload.sh"),
    ("unbound_swap", "unbound", "two-instance swap (start B, TERM A)", "closed", "docs/examples/unbound/start.sh", "docs/examples/unbound/swap.sh"),
]
