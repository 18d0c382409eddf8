#!/usr/bin/env python3
"""Holds N idle keep-alive HTTP connections to HOST:PORT.

Each connection sends one GET and reads its answer, so the server sees it as an idle keep-alive
connection. Prints "ready N SECONDS" when all are open and answered, then waits until stdin
closes, then closes them all. Used by scripts/bench-http to measure memory per connection.
"""
import selectors
import socket
import sys
import time


def main():
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    start = time.monotonic()
    pending = {}
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
        pending[s.fileno()] = b""
    answered = 0
    deadline = start + 60
    while answered < n and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                s.send(req)
                sel.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(65536)
            if not data:
                sys.exit(f"connection closed by the server after {answered} answers")
            buf = pending[s.fileno()] + data
            pending[s.fileno()] = buf
            head, sep, body = buf.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(body) >= length:
                sel.unregister(s)
                answered += 1
    if answered < n:
        sys.exit(f"only {answered} of {n} connections answered")
    print(f"ready {n} {time.monotonic() - start:.3f}", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
