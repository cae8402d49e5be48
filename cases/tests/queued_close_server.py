#!/usr/bin/python3
"""A small reuseport server for testing `reuseport-check watch` from outside: run it in a
network namespace of its own (unshare -n). Two listeners share a port; one never accepts.
Commands on stdin, answers on stdout, one line each:
  fill N   connect N clients; wait until the silent listener's accept queue is full
  close    close the silent listener; report how many clients saw ECONNRESET
"""
import errno
import json
import socket
import struct
import subprocess
import sys
import threading
import time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 47500
BACKLOG = int(sys.argv[2]) if len(sys.argv) > 2 else 4


def accept_queue(sock):
    # struct tcp_info: 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss, unacked;
    # for a listener tcpi_unacked is the accept-queue length.
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 24)[0]


def listener(backlog):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", PORT))
    s.listen(backlog)
    return s


def serve(s):
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            return
        c.close()


def main():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    silent = listener(BACKLOG)
    busy = listener(128)
    threading.Thread(target=serve, args=(busy,), daemon=True).start()
    clients = []
    print(json.dumps({"ready": True, "port": PORT}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "fill":
            deadline = time.time() + 10
            while accept_queue(silent) <= BACKLOG and time.time() < deadline:
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", PORT))
                except BlockingIOError:
                    pass
                clients.append(c)
                time.sleep(0.002)
            print(json.dumps({"queued": accept_queue(silent), "clients": len(clients)}), flush=True)
        elif cmd[0] == "close":
            silent.close()
            time.sleep(0.3)
            resets = 0
            for c in clients:
                try:
                    c.recv(1)
                except ConnectionResetError:
                    resets += 1
                except OSError as e:
                    if e.errno == errno.ECONNRESET:
                        resets += 1
            print(json.dumps({"client_resets": resets}), flush=True)
        elif cmd[0] == "quit":
            return


if __name__ == "__main__":
    main()
