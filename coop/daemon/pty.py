"""One PTY of a session, as its supervisor holds it: master fd, output ring, lazy screen,
activity, and the clients that watch it.

Output is fanned out to every client the moment it is read; the screen parses later (see
coop.pty.screen). Input from all clients merges in arrival order and is never held back:
a lone ESC reaches the agent at once. The window size follows the most recently active
client (tmux's `latest`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

from coop.ipc.conn import Conn
from coop.ipc.framing import encode_control, encode_data
from coop.pty.activity import Activity
from coop.pty.ring import OutputRing
from coop.pty.screen import ScreenTracker

READ_SIZE = 65536
"""One read of the PTY: the largest data frame a client is sent."""
MAX_TYPE_AHEAD = 1 << 20
"""Input kept for a PTY that is still starting; input past it, and all that follows until
the PTY starts, is dropped (never a gap in the middle of what is kept), and the PTY says so."""


class Pty:
    """A PTY of the session; it survives restarts of its process (the ring continues)."""

    def __init__(self, ident: int, kind: str, argv: list[str], size: tuple[int, int],
                 on_event: Callable[[dict[str, Any]], None]) -> None:
        self.ident = ident
        self.kind = kind  # "agent" or "shell"
        self.argv = argv
        self.rows, self.cols = size
        self.ring = OutputRing()
        self.screen = ScreenTracker(self.ring, self.cols, self.rows)
        self.activity = Activity()
        self.clients: set[Conn] = set()
        self.followers: set[Conn] = set()
        self.master: int | None = None
        self.alive = False
        self.exit_code: int | None = None
        self.started_at = 0.0
        self.quick_exits = 0
        self._pending = bytearray()
        self.spawning = False
        """Asked of the sandbox's init, not started yet: input is kept for it meanwhile."""
        self._type_ahead_lost = False
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._waiting = False

    # -- the process behind it ------------------------------------------------------
    def started(self, master: int) -> None:
        self.master = master
        self.spawning = False
        os.set_blocking(master, False)
        self.alive = True
        self.exit_code = None
        self.started_at = time.time()
        self._set_winsize()
        self._loop.add_reader(master, self._readable)
        if self._pending:  # typed (or piped) while it started
            self._loop.add_writer(master, self._writable)
        if self._type_ahead_lost:
            self._type_ahead_lost = False
            self.notice(f"input past {MAX_TYPE_AHEAD >> 20} MiB sent before this terminal "
                        "started was dropped")

    def _readable(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:  # every slave end is closed; init reports the exit itself
            self._close_master()
            return
        self.output(data)

    def output(self, data: bytes) -> None:
        """New bytes from the PTY (or a notice from coop): ring, activity, every client."""
        self.ring.append(data)
        self.activity.on_output(data)
        if self.clients or self.followers:
            frame = encode_data(data)
            for conn in self.clients:
                conn.send(frame)
            for conn in self.followers:
                conn.send(frame)

    def notice(self, text: str) -> None:
        """A visible line from coop itself, in the stream and the scrollback."""
        self.output(f"\r\n\x1b[0;1m[coop] {text}\x1b[0m\r\n".encode())

    def exited(self, code: int) -> None:
        self.alive = False
        self.exit_code = code
        self.spawning = self._type_ahead_lost = False
        self._pending.clear()
        if self.master is not None:
            self._drain()
            self._close_master()
        self.broadcast({"type": "pty_exited", "pty": self.ident, "code": code})

    def _drain(self) -> None:
        assert self.master is not None
        while True:
            try:
                data = os.read(self.master, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self.output(data)

    def _close_master(self) -> None:
        if self.master is None:
            return
        self._loop.remove_reader(self.master)
        if self._pending:
            self._loop.remove_writer(self.master)
            self._pending.clear()
        os.close(self.master)
        self.master = None

    # -- input ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Client input: straight to the PTY, queued when the PTY is full or still starting
        (`coop shell -c CMD <file` sends its input at once, before the shell exists)."""
        if not data:
            return
        if self.master is None:
            if self.spawning and not self._type_ahead_lost:
                if len(self._pending) + len(data) <= MAX_TYPE_AHEAD:
                    self._pending += data
                else:
                    self._type_ahead_lost = True
            return
        self.activity.on_input()
        if self._pending:
            self._pending += data
            return
        try:
            written = os.write(self.master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written < len(data):
            self._pending += data[written:]
            self._loop.add_writer(self.master, self._writable)

    def _writable(self) -> None:
        assert self.master is not None
        try:
            written = os.write(self.master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending:
            self._loop.remove_writer(self.master)

    # -- size -----------------------------------------------------------------------
    def resize(self, rows: int, cols: int) -> None:
        rows, cols = max(1, min(rows, 1000)), max(1, min(cols, 1000))
        if (rows, cols) == (self.rows, self.cols):
            return
        self.rows, self.cols = rows, cols
        self.screen.resize(cols, rows)
        self._set_winsize()
        self.broadcast(self.size_control())

    def size_control(self) -> dict[str, Any]:
        """Clients that follow rather than set the size (a phone) draw at this one."""
        return {"type": "size", "rows": self.rows, "cols": self.cols}

    def _set_winsize(self) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                        struct.pack("HHHH", self.rows, self.cols, 0, 0))

    # -- clients --------------------------------------------------------------------
    def broadcast(self, message: dict[str, Any]) -> None:
        frame = encode_control(message)
        for conn in self.clients:
            conn.send(frame)

    def join(self, conn: Conn) -> None:
        """A new client: the size, the exact current screen, then the live stream."""
        conn.send(encode_control(self.size_control()))
        conn.send(encode_data(self.screen.snapshot()))
        self.clients.add(conn)

    def resync(self, conn: Conn) -> None:
        """A client fell behind: forget its queue and repaint it from the screen."""
        conn.drop_queue()
        conn.send(encode_control({"type": "resync", "pty": self.ident}))
        conn.send(encode_data(self.screen.snapshot()))

    def client_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self.clients:
            kind = str(conn.state.get("kind", "local"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    # -- housekeeping ---------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Called a few times a second: parse when quiet, notice waiting changes."""
        if self.screen.behind and now - self.activity.last_output > 0.05:
            self.screen.catch_up(32 * 1024)
        waiting = self.alive and self.activity.waiting(now)
        if waiting != self._waiting:
            self._waiting = waiting
            self._on_event({"event": "activity", "pty": self.ident, "waiting": waiting,
                            "notified": self.activity.notified})

    @property
    def waiting(self) -> bool:
        return self._waiting

    def info(self) -> dict[str, Any]:
        return {"id": self.ident, "kind": self.kind, "command": self.argv[0] if self.argv else "",
                "alive": self.alive, "exit_code": self.exit_code,
                "size": [self.rows, self.cols], "clients": self.client_counts(),
                "last_output": self.activity.last_output, "bell": self.activity.bell,
                "waiting": self._waiting, "notified": self.activity.notified,
                "output_bytes": self.ring.end, "title": self.screen.title}
