"""Attaching this terminal to a PTY of a session (`coop`, `coop attach`, `coop shell`).

Raw mode, both directions relayed, SIGWINCH passed on as a `resize` control frame, and the
detach key (Ctrl+] unless configured) handled here: it never reaches the agent. Whatever
ends the attachment — detach, the PTY exiting, the connection dropping — the terminal
gets back its exact attributes and its modes (alternate screen, mouse, bracketed paste,
application cursor keys, cursor visibility) are switched back off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import sys
from dataclasses import dataclass, field

from coop.errors import CoopError
from coop.ipc.framing import CONTROL, FrameParser, encode_control, encode_data
from coop.pty.relay import raw_terminal, window_size
from coop.sessionref import printable

RESTORE_MODES = (b"\x1b[0m\x1b[?1l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l"
                 b"\x1b[?2004l\x1b[?25h")
_ALT = re.compile(rb"\x1b\[\?(?:1049|1047|47)([hl])")


def detach_byte(keys: str) -> bytes:
    """`ctrl-]` -> b"\\x1d"."""
    match = re.fullmatch(r"ctrl-(.)", keys.strip().lower())
    if not match:
        raise CoopError(f"detach key {keys!r} is not of the form ctrl-X.")
    return bytes([ord(match.group(1).upper()) & 0x1F])


@dataclass
class Outcome:
    reason: str
    exit_code: int | None = None


def stream(sock: socket.socket, session: str, detach: bytes) -> Outcome:
    """Relay until detached or disconnected; the terminal is restored afterwards."""
    interactive = os.isatty(0)
    alternate = False
    with raw_terminal(0) if interactive else contextlib.nullcontext():
        try:
            outcome, alternate = _relay(sock, detach, interactive)
        finally:
            restore = RESTORE_MODES + (b"\x1b[?1049l" if alternate else b"")
            if os.isatty(1):
                os.write(1, restore)
    return outcome


def _relay(sock: socket.socket, detach: bytes, interactive: bool) -> tuple[Outcome, bool]:
    state = _State()
    try:
        return _relay_loop(sock, detach, interactive, state), state.alternate
    except (ConnectionError, BrokenPipeError):
        # A write can fail because the supervisor already said why it is over and closed
        # (a dead agent detaches at once): what it said is still in our receive queue.
        return _remainder(sock, state), state.alternate


@dataclass
class _State:
    parser: FrameParser = field(default_factory=lambda: FrameParser(stream=True))
    alternate: bool = False
    exit_code: int | None = None


def _remainder(sock: socket.socket, state: _State) -> Outcome:
    """What the supervisor sent before the connection broke: a `detached`, or nothing."""
    while True:
        try:
            data = sock.recv(262144)
        except OSError:
            data = b""
        if not data:
            return Outcome("lost", state.exit_code)
        outcome = _received(data, state)
        if outcome is not None:
            return outcome


def _received(data: bytes, state: _State) -> Outcome | None:
    """Show terminal bytes, follow controls; an Outcome when the supervisor detached us."""
    state.parser.feed(data)
    for kind, body in state.parser.frames():
        if kind == CONTROL:
            control = json.loads(body)
            what = control.get("type")
            if what == "pty_exited":
                state.exit_code = control.get("code")
            elif what == "pty_restarting":
                state.exit_code = None
            elif what == "detached":  # with `code` when the PTY is over for good
                return Outcome(str(control.get("reason", "detached")),
                               control.get("code", state.exit_code))
            continue
        for match in _ALT.finditer(body):
            state.alternate = match.group(1) == b"h"
        _write_all(body)
    return None


def _relay_loop(sock: socket.socket, detach: bytes, interactive: bool,
                state: _State) -> Outcome:
    sel = selectors.DefaultSelector()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    try:
        if interactive:
            _send_size(sock)
        try:
            sel.register(0, selectors.EVENT_READ, "stdin")
        except PermissionError:
            # A regular file or /dev/null (`coop shell -c CMD </dev/null`): epoll cannot
            # watch it, and it is always readable, so it is sent whole now.
            while data := os.read(0, 65536):
                if _forward(sock, data, detach):
                    return Outcome("detached")
        while True:
            for key, _ in sel.select():
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                    _send_size(sock)
                elif key.data == "stdin":
                    data = os.read(0, 65536)
                    if not data:
                        sel.unregister(0)
                    elif _forward(sock, data, detach):
                        return Outcome("detached")
                else:
                    data = sock.recv(262144)
                    if not data:
                        return Outcome("lost", state.exit_code)
                    outcome = _received(data, state)
                    if outcome is not None:
                        return outcome
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        sel.close()
        os.close(wake_r)
        os.close(wake_w)


def _forward(sock: socket.socket, data: bytes, detach: bytes) -> bool:
    """Send what was typed; True when it held the detach key (what came before it is sent,
    then the request to detach)."""
    if detach not in data:
        sock.sendall(encode_data(data))
        return False
    before = data[:data.index(detach)]
    if before:
        sock.sendall(encode_data(before))
    sock.sendall(encode_control({"type": "detach"}))
    return True


def _send_size(sock: socket.socket) -> None:
    size = window_size(0) or window_size(1)
    if size:
        sock.sendall(encode_control({"type": "resize", "rows": size[0], "cols": size[1]}))


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(1, view):]
        except BlockingIOError:
            selectors.DefaultSelector().select(0.01)


def report(session: str, outcome: Outcome) -> int:
    """Print how the attachment ended; returns the exit code for the CLI."""
    if outcome.reason == "detached" or outcome.reason == "detach":
        print(f"\n[detached from {session}; `coop attach {session}` to come back]",
              file=sys.stderr)
        return 0
    if outcome.reason == "lost":
        print(f"\n[the connection to session {session} was lost; its supervisor may have "
              "died. `coop ls` shows what is running]", file=sys.stderr)
        return 1
    print(f"\n[{session}: {printable(outcome.reason)}]", file=sys.stderr)
    return outcome.exit_code or 0
