"""coop's HTTP/HTTPS forward proxy: the only way out of a `proxy`-mode sandbox.

It listens on a socket that lives inside the sandbox's network namespace (created there by
the sandbox's outer process and handed over), and connects out from the host's namespace.
`CONNECT host:port` opens a tunnel (TLS stays end to end); absolute-URI requests
(`GET http://host/path`) are forwarded one per connection. Every target is checked by the
`AllowList` before and after resolution, and the connection goes to the address that was
checked, never to a second lookup. Denials get a 403 whose body says how to allow the host,
and are reported through `on_denial`.

Clients that connect and never send are dropped after `HEAD_TIMEOUT`; at most
`MAX_CLIENTS` connections are served at once, and when that many are open a newcomer evicts
the oldest one still silent, so idle sockets can never lock out a working client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from coop.net.policy import AllowList, parse_ip

log = logging.getLogger("coop.proxy")
PROXY_PORT = 3128
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024
MAX_CLIENTS = 512
CHUNK = 256 * 1024
HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


@dataclass(frozen=True)
class Denial:
    time: float
    host: str
    port: int
    reason: str

    def line(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{stamp} denied {self.host}:{self.port}: {self.reason}"


def proxy_env(port: int = PROXY_PORT) -> dict[str, str]:
    """What the sandbox's environment needs to use the proxy."""
    url = f"http://127.0.0.1:{port}"
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = url
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    return env


class ForwardProxy:
    def __init__(self, allow: AllowList, on_denial: Callable[[Denial], None] | None = None,
                 head_timeout: float = HEAD_TIMEOUT, max_clients: int = MAX_CLIENTS,
                 session: str | None = None) -> None:
        self.allow = allow
        self.on_denial = on_denial
        self.session = session
        """The session this proxy serves: its refusals then say how to approve a host."""
        self.head_timeout = head_timeout
        self.max_clients = max_clients
        self.active = 0
        self.silent: dict[asyncio.StreamWriter, float] = {}
        """Connections that have not sent a full request head yet, oldest first."""
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[object]] = set()
        """Every connection's task: asyncio keeps only weak references to tasks, and a
        tunnel waiting on two pipes would otherwise be collected while still open."""

    async def start(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.server = await asyncio.start_server(self._serve, sock=listener, limit=MAX_HEAD)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.active >= self.max_clients:
            if not self.silent:
                writer.close()
                return
            oldest = next(iter(self.silent))
            del self.silent[oldest]
            oldest.transport.abort()
        self.active += 1
        try:
            await self._handle(reader, writer)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self.active -= 1
            self.silent.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.silent[writer] = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            self.silent.pop(writer, None)
        request_line, _, rest = head.partition(b"\r\n")
        parts = request_line.split()
        if len(parts) != 3:
            await self._reply(writer, 400, "Bad Request", "coop proxy: malformed request.")
            return
        method, target, version = parts
        if method == b"CONNECT":
            host, port = _split_host_port(target.decode("latin-1"), 443)
            upstream = await self._open(writer, host, port)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            writer.write(version + b" 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            url = urlsplit(target.decode("latin-1"))
            if url.scheme != "http" or not url.hostname:
                await self._reply(writer, 400, "Bad Request",
                                  "coop proxy: only absolute http:// URLs and CONNECT.")
                return
            host, port = url.hostname, url.port or 80
            upstream = await self._open(writer, host, port)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            headers = [line for line in rest.split(b"\r\n")
                       if line and line.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
            up_writer.write(b" ".join([method, path.encode("latin-1"), version]) + b"\r\n"
                            + b"".join(h + b"\r\n" for h in headers)
                            + b"Connection: close\r\n\r\n")
        await splice(reader, writer, up_reader, up_writer)

    async def _open(self, writer: asyncio.StreamWriter, host: str, port: int
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        decision = self.allow.check_name(host)
        if not decision.allowed:
            await self._deny(writer, host, port, decision.reason)
            return None
        loop = asyncio.get_running_loop()
        literal = parse_ip(host)
        try:
            if literal is not None:
                addresses = [str(literal)]
            else:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), CONNECT_TIMEOUT)
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except (TimeoutError, OSError) as exc:
            await self._reply(writer, 502, "Bad Gateway",
                              f"coop proxy: cannot resolve {host}: {exc}.")
            return None
        for address in addresses:
            ip = parse_ip(address)
            assert ip is not None
            verdict = self.allow.check_address(host, ip)
            if not verdict.allowed:
                await self._deny(writer, host, port, verdict.reason)
                return None
        error = ""
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=CHUNK), CONNECT_TIMEOUT)
            except (TimeoutError, OSError) as exc:
                error = str(exc) or type(exc).__name__
        await self._reply(writer, 502, "Bad Gateway",
                          f"coop proxy: cannot connect to {host}:{port}: {error}.")
        return None

    async def _deny(self, writer: asyncio.StreamWriter, host: str, port: int,
                    reason: str) -> None:
        denial = Denial(time.time(), host, port, reason)
        log.info("%s", denial.line())
        if self.on_denial is not None:
            self.on_denial(denial)
        fix = "add it to `network.allow` in the Coopfile"
        if self.session:
            fix = (f"run `coop allow {host} {self.session}` on the host (or approve it on the "
                   f"web page) for this session; for good, {fix}")
        await self._reply(writer, 403, "Forbidden", f"coop proxy: {reason}. To allow it, {fix}.")

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, status: str, text: str) -> None:
        body = (text + "\n").encode()
        writer.write(f"HTTP/1.1 {code} {status}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _split_host_port(target: str, default: int) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        return host, int(port) if port else default
    except ValueError:
        return host, default


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    """Copy both ways until both directions ended (half-closes are passed on)."""
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        with contextlib.suppress(Exception):
            up_writer.close()
