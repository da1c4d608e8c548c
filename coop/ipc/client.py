"""The CLI's side of the protocol: blocking sockets, no asyncio (start-up time matters).

`connect()` finds the daemon or starts it: under `daemon.lock` (flock) it re-checks, removes
a stale socket, starts `python -m coop.daemon` detached with its output in the daemon log,
and waits for the socket as long as the daemon is alive (up to `SPAWN_WAIT`: a loaded
machine can take seconds to import it); a daemon that exits says so at once. Ten clients
racing start exactly one daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from coop.errors import CoopError
from coop.ipc.framing import PROTOCOL_VERSION, recv_message, send_message
from coop.paths import CoopPaths, ensure_private_dir

if TYPE_CHECKING:
    import subprocess

SPAWN_WAIT = 60.0
EXIT_CODES = {"SESSION_NOT_FOUND": 3, "PTY_NOT_FOUND": 3}


class DaemonError(CoopError):
    exit_code = 4


class RequestError(CoopError):
    """The daemon answered with an error; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code or EXIT_CODES.get(code, 1)


def _try_connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def handshake(sock: socket.socket) -> socket.socket:
    send_message(sock, {"version": PROTOCOL_VERSION})
    reply = recv_message(sock)
    if not reply.get("ok"):
        raise DaemonError(reply.get("message", "the daemon refused the handshake"),
                          "Run `coop daemon stop` and try again.")
    return sock


@contextlib.contextmanager
def _lock(paths: CoopPaths) -> Iterator[None]:
    fd = os.open(paths.run_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def connect(paths: CoopPaths, autostart: bool = True) -> socket.socket:
    """A handshaken connection to the daemon, starting it when needed."""
    path = str(paths.run_dir / "daemon.sock")
    sock = _try_connect(path)
    if sock is not None:
        return handshake(sock)
    if not autostart:
        raise DaemonError("the daemon is not running.", "Any coop command starts it.")
    ensure_private_dir(paths.run_dir)
    with _lock(paths):
        sock = _try_connect(path)
        if sock is not None:
            return handshake(sock)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: nobody answers on it
        daemon = _start_daemon(paths)
        deadline = time.monotonic() + SPAWN_WAIT
        while time.monotonic() < deadline:
            exited = daemon.poll() is not None  # before the try: then nobody will answer
            sock = _try_connect(path)
            if sock is not None:
                return handshake(sock)
            if exited:
                raise DaemonError(f"the daemon exited as it started (code {daemon.returncode}).",
                                  f"See its log: {paths.daemon_log}")
            time.sleep(0.005)
    raise DaemonError(f"the daemon did not start within {SPAWN_WAIT:.0f} s.",
                      f"See its log: {paths.daemon_log}")


def _start_daemon(paths: CoopPaths) -> subprocess.Popen[bytes]:
    import subprocess  # only here: it costs a few ms that every other call saves

    ensure_private_dir(paths.state_dir)
    log = os.open(paths.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen([sys.executable, "-m", "coop.daemon"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True,
                                cwd="/")
    finally:
        os.close(log)


def request(sock: socket.socket, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return its successful reply (errors raise RequestError)."""
    send_message(sock, message)
    try:
        reply = recv_message(sock)
    except ConnectionError:
        raise DaemonError("the daemon closed the connection.",
                          "See `coop daemon logs`.") from None
    if not reply.get("ok"):
        text = str(reply.get("message", "the request failed"))
        raise RequestError(str(reply.get("error", "ERROR")),
                           text if text.endswith((".", "\n", "?", "!")) else text + ".",
                           reply.get("exit_code"))
    return reply


def call(paths: CoopPaths, message: dict[str, Any], autostart: bool = True) -> dict[str, Any]:
    """Connect, send one request, close."""
    with connect(paths, autostart) as sock:
        return request(sock, message)
