"""Process titles: what `ps`, `top` and `pgrep` call coop's long-lived processes.

The daemon is started as `python3 -m coop.daemon`, and the zygote, every session's
supervisor and each sandbox's outer process and init are forks of it, so without titles
they all read the same in `ps`. `set_title` gives a process two names:

- its comm (`ps -o comm`, `top`, `pgrep coop-session`): the kind alone, e.g.
  `coop-session`, set with prctl(PR_SET_NAME); the kernel keeps 15 bytes, too few for a
  session name as well;
- its command line (`ps aux`, `pgrep -f`, `/proc/PID/cmdline`): `coop-session NAME`,
  written over the process's original argv strings in place, as setproctitle(3) does. The
  area cannot grow, so a title longer than the original command line is shortened.

The byte that ended the original argv is left non-NUL: that tells the kernel the title
was rewritten, so `/proc/PID/cmdline` reads just the title up to its NUL instead of the
whole NUL-padded area. Where any of this cannot work (not Linux, no /proc, no room) the
process keeps its old name: a title is a convenience, never a reason to fail.
"""

from __future__ import annotations

import ctypes
import sys

KINDS = ("coop-daemon", "coop-zygote", "coop-session", "coop-sandbox", "coop-init")
"""Every title coop gives (the comm of each process, all within 15 bytes)."""
NAME_MAX = 64
"""A session name longer than this (never a valid one) is cut, ending in `...`."""
PR_SET_NAME = 15
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@:=,")

_area: tuple[int, int] | None = None
"""(address, length) of this process's argv strings; forks inherit it (same addresses)."""
_looked = False


def set_title(kind: str, name: str | None = None) -> None:
    """Call this process `kind` (comm) and `kind NAME` (command line), silently best-effort."""
    if not sys.platform.startswith("linux"):
        return
    _set_comm(kind)
    area = _argv_area()
    if area is None:
        return
    address, length = area
    title = fit(kind, clean(name) if name is not None else None, length - 1)
    if title is None:
        return
    raw = title.encode("ascii")
    buf = raw + b"\0" * (length - len(raw))
    if len(raw) < length - 1:
        buf = buf[:-1] + b" "  # the kernel's "title was rewritten" sign (see above)
    ctypes.memmove(address, buf, length)


def clean(name: str) -> str:
    """`name` fit for a title: printable ASCII without spaces (anything else becomes `?`,
    so no control character or escape sequence reaches a terminal running `ps`), and at
    most NAME_MAX characters."""
    safe = "".join(c if c in _SAFE else "?" for c in name[:NAME_MAX + 1])
    return safe if len(safe) <= NAME_MAX else safe[:NAME_MAX - 3] + "..."


def fit(kind: str, name: str | None, room: int) -> str | None:
    """`kind NAME` in at most `room` bytes: the name shortened (ending in `...`) when it
    does not fit, the kind alone when not even a few characters of it would, None when
    the kind itself does not fit."""
    title = kind if not name else f"{kind} {name}"
    if len(title) <= room:
        return title
    keep = room - len(kind) - len(" ...")
    if name and keep >= 4:
        return f"{kind} {name[:keep]}..."
    return kind if len(kind) <= room else None


def _set_comm(kind: str) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong,
                               ctypes.c_ulong, ctypes.c_ulong]
        libc.prctl(PR_SET_NAME, kind.encode("ascii")[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _argv_area() -> tuple[int, int] | None:
    """Where the kernel keeps this process's argv: arg_start and arg_end, fields 48 and 49
    of /proc/self/stat (counted after the parenthesised comm, which may hold spaces)."""
    global _area, _looked
    if not _looked:
        _looked = True
        try:
            with open("/proc/self/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            start, end = int(fields[45]), int(fields[46])
        except (OSError, IndexError, ValueError):
            return None
        if 0 < start < end and end - start < 1 << 20:
            _area = (start, end - start)
    return _area
