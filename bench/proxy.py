"""The allow-list proxy against a direct connection, on loopback.

Connection set-up: TCP connect plus `CONNECT` and its `200` through the proxy, against a
plain TCP connect to the same server. Throughput: 1 GiB downloaded through a CONNECT
tunnel, against the same download direct. The proxy runs in a process of its own, as in a
session's supervisor; the server is a separate process too.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "200"))
SIZE = int(os.environ.get("BENCH_BYTES", str(1 << 30)))
ROOT = str(Path(__file__).resolve().parent.parent)

SERVER = """
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1024)
print(srv.getsockname()[1], flush=True)
chunk = b"x" * (1 << 20)
def serve(conn):
    with conn:
        request = conn.recv(64)
        if request.startswith(b"GET "):
            left = int(request.split()[1])
            while left > 0:
                left -= conn.send(chunk[:min(left, len(chunk))])
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

PROXY = f"""
import asyncio, socket, sys
sys.path.insert(0, {ROOT!r})
from coop.net.policy import AllowList
from coop.net.proxy import ForwardProxy
async def main():
    lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1024)
    print(lst.getsockname()[1], flush=True)
    await ForwardProxy(AllowList(["127.0.0.1"])).start(lst)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _spawn(code: str) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _connect_direct(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


def _connect_proxy(proxy: int, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy))
    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                 .encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200"), reply
    return sock


def _download(sock: socket.socket) -> float:
    start = time.perf_counter()
    sock.sendall(f"GET {SIZE}\n".encode())
    buffer = bytearray(1 << 20)
    left = SIZE
    while left > 0:
        got = sock.recv_into(buffer)
        if not got:
            raise RuntimeError("short read")
        left -= got
    return SIZE / (time.perf_counter() - start) / 1e6


def main() -> None:
    server, port = _spawn(SERVER)
    proxy, proxy_port = _spawn(PROXY)
    try:
        print(f"proxy vs direct on loopback, {RUNS} connections, {SIZE >> 20} MiB downloads")
        connectors: tuple[tuple[str, Callable[[], socket.socket]], ...]
        connectors = (("direct TCP connect", lambda: _connect_direct(port)),
                      ("through the proxy (connect + CONNECT + 200)",
                       lambda: _connect_proxy(proxy_port, port)))
        for label, connect in connectors:
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                sock = connect()
                times.append((time.perf_counter() - start) * 1000)
                sock.close()
            ordered = sorted(times)
            print(f"  {label:46s} p50 {statistics.median(times):6.3f} ms   "
                  f"p99 {ordered[int(len(ordered) * 0.99) - 1]:6.3f} ms", flush=True)
        downloads: tuple[tuple[str, Callable[[], socket.socket]], ...]
        downloads = (("direct download", lambda: _connect_direct(port)),
                     ("download through a CONNECT tunnel",
                      lambda: _connect_proxy(proxy_port, port)))
        for label, connect in downloads:
            rates = []
            for _ in range(3):
                with connect() as sock:
                    rates.append(_download(sock))
            print(f"  {label:46s} {statistics.median(rates):8.0f} MB/s (median of 3)",
                  flush=True)
    finally:
        server.kill()
        proxy.kill()
