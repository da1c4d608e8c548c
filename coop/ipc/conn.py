"""A framed, non-blocking connection on an asyncio loop, with a bounded output queue.

Used by the daemon and the session supervisors for every peer: CLI clients, handed-off
attach streams and the daemon<->supervisor channel. Reads go straight from the socket into
a `FrameParser`; writes are tried at once and queued only when the socket is full. The
queue is bounded: past `limit` bytes `on_overflow` decides (a terminal client is
resynchronised with a snapshot, a control peer is dropped), so a slow peer can never make
the process grow or stall anything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from coop.ipc.framing import FrameParser, ProtocolError, encode, encode_control, error

log = logging.getLogger("coop.ipc")
READ_SIZE = 256 * 1024
QUEUE_LIMIT = 8 << 20
"""The most a peer's output queue holds before `on_overflow` (a terminal client: a resync)."""


class Conn:
    """One peer. `on_frame(conn, kind, body)` is called for every complete frame."""

    def __init__(self, sock: socket.socket,
                 on_frame: Callable[[Conn, int, bytes], None],
                 on_close: Callable[[Conn], None] | None = None, *,
                 stream: bool = False, accept_fds: bool = False,
                 limit: int = QUEUE_LIMIT,
                 on_overflow: Callable[[Conn], None] | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.parser = FrameParser(stream=stream)
        self.on_frame = on_frame
        self.on_close = on_close
        self.accept_fds = accept_fds
        self.fds: deque[int] = deque()
        self.limit = limit
        self.on_overflow = on_overflow
        self._out: deque[memoryview] = deque()
        self.queued = 0
        self.closed = False
        self._writing = False
        self._reading = False
        self.state: dict[str, Any] = {}
        """Free slot for the owner (kind, pty, size, …)."""

    def start(self) -> None:
        self.loop.add_reader(self.fd, self._readable)
        self._reading = True

    def pause_reading(self) -> None:
        if self._reading and not self.closed:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def set_stream(self, stream: bool) -> None:
        """Switch framing (after a successful attach); buffered bytes carry over."""
        rest = self.parser.take_rest()
        self.parser = FrameParser(stream=stream)
        self.parser.feed(rest)

    def _readable(self) -> None:
        try:
            if self.accept_fds:
                data, fds, _, _ = socket.recv_fds(self.sock, READ_SIZE, 8)
                self.fds.extend(fds)
            else:
                data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.parser.feed(data)
        self.process()

    def process(self) -> None:
        """Dispatch every complete buffered frame."""
        try:
            for kind, body in self.parser.frames():
                if self.closed:
                    return
                self.on_frame(self, kind, body)
        except ProtocolError as exc:
            log.info("protocol error from a peer: %s", exc.message)
            if self.parser.stream:
                self.send(encode_control({"type": "error", "error": exc.code,
                                          "message": exc.message}))
            else:
                self.send(encode(error(exc.code, exc.message)))
            self.close(flush=True)

    def reply(self, message: dict[str, Any]) -> None:
        self.send(encode(message))

    def send(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if not self._out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._out.append(memoryview(data))
        self.queued += len(data)
        if not self._writing:
            self.loop.add_writer(self.fd, self._writable)
            self._writing = True
        if self.queued > self.limit:
            if self.on_overflow is not None:
                self.on_overflow(self)
            else:
                log.info("dropping a peer that does not read")
                self.close()

    def drop_queue(self) -> None:
        """Forget what is queued (keeping a partly sent frame whole)."""
        if not self._out:
            return
        head = self._out[0]
        self._out.clear()
        self._out.append(head)
        self.queued = len(head)

    def send_with_fds(self, data: bytes, fds: list[int]) -> None:
        """Send a frame with file descriptors attached (local channels only)."""
        self._flush_blocking()
        self.sock.setblocking(True)
        try:
            socket.send_fds(self.sock, [data], fds)
        finally:
            self.sock.setblocking(False)

    def _flush_blocking(self) -> None:
        if not self._out:
            return
        self.sock.setblocking(True)
        try:
            while self._out:
                self.sock.sendall(self._out.popleft())
        finally:
            self.sock.setblocking(False)
            self.queued = 0

    def _writable(self) -> None:
        while self._out:
            head = self._out[0]
            try:
                sent = self.sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            self.queued -= sent
            if sent < len(head):
                self._out[0] = head[sent:]
                return
            self._out.popleft()
        self.loop.remove_writer(self.fd)
        self._writing = False
        if self.state.get("close_when_flushed"):
            self.close()

    def close(self, flush: bool = False) -> None:
        if self.closed:
            return
        if flush and self._out:
            self.state["close_when_flushed"] = True
            self.pause_reading()
            return
        self.closed = True
        if self._reading:
            self.loop.remove_reader(self.fd)
        if self._writing:
            self.loop.remove_writer(self.fd)
        while self.fds:
            try:
                os.close(self.fds.popleft())
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self.on_close is not None:
            self.on_close(self)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return int(uid)
