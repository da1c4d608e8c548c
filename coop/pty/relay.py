"""Relaying bytes between the local terminal (or pipes) and a sandboxed command.

Used by `coop run`: the command owns a PTY made inside the sandbox; this side puts the
local terminal in raw mode, copies bytes both ways, passes window size changes on, and
restores the terminal exactly on exit, whatever ends the run. Without a terminal it
copies the pipes that stand in for terminal fds, so the sandbox never holds a host tty.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import struct
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of a terminal, or None."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows or 24, cols or 80)


def set_window_size(fd: int, size: tuple[int, int]) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for the duration; the exact previous attributes come back afterwards."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


@dataclass
class Pipe:
    """One direction of copying: bytes read from `src` are written to `dst`."""

    src: int
    dst: int
    close_dst_on_eof: bool = True
    output: bool = False
    """Output of the command: drained after it exits."""
    pending: bytearray = field(default_factory=bytearray)
    eof: bool = False


def relay(pipes: list[Pipe], child: int, *, resize: tuple[int, int] | None = None,
          forward_to: int | None = None, early_signals: list[int] | None = None) -> int:
    """Copy until `child` exits and its output is drained; returns its wait status.

    `resize` = (terminal fd, pty master fd): SIGWINCH copies the size across.
    `forward_to`: signals that would end this process are sent there instead;
    `early_signals` arrived before the relay started and are forwarded first.
    """
    sel = selectors.DefaultSelector()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    handled = [signal.SIGCHLD, signal.SIGWINCH]
    if forward_to is not None:
        handled += [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
    sel.register(wake_r, selectors.EVENT_READ, None)
    for pipe in pipes:
        os.set_blocking(pipe.src, False)
        sel.register(pipe.src, selectors.EVENT_READ, pipe)
    status: int | None = None
    for signum in early_signals or []:
        if forward_to is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(forward_to, signum)
    try:
        while True:
            if status is None:
                pid, st = os.waitpid(child, os.WNOHANG)
                if pid:
                    status = st
            if status is not None:
                _drain(pipes)
                return status
            for key, _ in sel.select():
                if key.data is None:
                    _on_signals(wake_r, resize, forward_to)
                else:
                    _copy(key.data, sel)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_wakeup)
        sel.close()
        os.close(wake_r)
        os.close(wake_w)


def _on_signals(wake_r: int, resize: tuple[int, int] | None, forward_to: int | None) -> None:
    try:
        signals = os.read(wake_r, 512)
    except BlockingIOError:
        return
    for signum in signals:
        if signum == signal.SIGWINCH and resize:
            size = window_size(resize[0])
            if size:
                set_window_size(resize[1], size)
        elif signum not in (signal.SIGCHLD, signal.SIGWINCH) and forward_to is not None:
            try:
                os.kill(forward_to, signum)
            except ProcessLookupError:
                pass


def _copy(pipe: Pipe, sel: selectors.BaseSelector) -> None:
    try:
        data = os.read(pipe.src, 65536)
    except BlockingIOError:
        return
    except OSError as exc:
        if exc.errno != errno.EIO:  # EIO: every slave end of a PTY is closed
            raise
        data = b""
    if not data:
        pipe.eof = True
        sel.unregister(pipe.src)
        if pipe.close_dst_on_eof:
            _close(pipe.dst)
        return
    _write_all(pipe.dst, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            _wait_writable(fd)
            continue
        except (BrokenPipeError, OSError):
            return  # the reader went away; drop like a closed terminal would
        view = view[written:]


def _wait_writable(fd: int) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_WRITE)
        sel.select(1.0)


def _drain(pipes: list[Pipe]) -> None:
    """Copy what is still buffered after the command exited."""
    for pipe in pipes:
        while pipe.output and not pipe.eof:
            try:
                data = os.read(pipe.src, 65536)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            _write_all(pipe.dst, data)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
