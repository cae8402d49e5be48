#!/usr/bin/python3
"""A plain HTTP/1.1 load client for tests that watch a real server: N threads, each doing
connect / GET with Connection: close / read to EOF, for D seconds. Prints one JSON line:
attempts, served, resets (ECONNRESET/EPIPE after connect), refused, other. Run it inside the
server's network namespace (nsenter -t PID -n)."""
import errno
import json
import socket
import sys
import threading
import time

HOST, PORT, THREADS, SECONDS = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
counts = {"attempts": 0, "served": 0, "resets": 0, "resets_in_connect": 0, "refused": 0, "timeouts": 0,
          "bad_status": 0, "closed_early": 0, "other": 0}
lock = threading.Lock()
REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def one():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((HOST, PORT))
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "resets_in_connect"
    except socket.timeout:
        return "timeouts"
    except OSError:
        return "other"
    try:
        s.sendall(REQUEST)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if not data:
            return "closed_early"
        return "served" if data.startswith(b"HTTP/1.1 200") else "bad_status"
    except (ConnectionResetError, BrokenPipeError):
        return "resets"
    except socket.timeout:
        return "timeouts"
    except OSError as e:
        return "resets" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "other"
    finally:
        s.close()


def worker(deadline):
    while time.time() < deadline:
        r = one()
        with lock:
            counts["attempts"] += 1
            counts[r] += 1


deadline = time.time() + SECONDS
ts = [threading.Thread(target=worker, args=(deadline,)) for _ in range(THREADS)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(counts), flush=True)
