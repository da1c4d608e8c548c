"""Let the tests' throwaway uid run this interpreter, its venv and this checkout.

As root, `python3` is often pyenv's, under /root (mode 0700). A venv made from it points
there, so a throwaway uid cannot even exec `.venv/bin/python`, and the README's two commands
would end in a PermissionError. Rather than ask a newcomer to rebuild their venv with another
Python, each process the tests start as another uid gets a mount namespace of its own in which
every directory that uid cannot traverse on the way to those paths (e.g. /root) is covered by
an empty tmpfs holding bind mounts of just those paths. Nothing changes outside that
namespace, and the rest of root's home stays hidden from the uid: the sandbox tests still see
what a real user would.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent
"""This checkout: the tests put it on the throwaway uid's PYTHONPATH."""

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_SLAVE = 0x2, 0x4, 0x1000, 0x4000, 0x80000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
# Looked up here, in the parent: a preexec function should not load libraries after fork.
_unshare = _libc.unshare
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]


def _traversable_by_others(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def _blocker(target: str) -> str | None:
    """The top-most ancestor of `target` that a uid without groups cannot enter, if any."""
    parts = Path(target).parts
    for depth in range(1, len(parts)):
        ancestor = os.path.join(*parts[:depth])
        if not _traversable_by_others(ancestor):
            return ancestor
    return None


@dataclass(frozen=True)
class Exposure:
    """What to cover (`blockers`) and what to bind back (`targets`, staged under `stage`)."""

    blockers: tuple[str, ...]
    targets: tuple[str, ...]
    stage: str

    def enter(self) -> None:
        """In a forked child, as root: a private mount namespace where `targets` are
        reachable. Raises OSError (reported by subprocess as the child's failure)."""
        if not self.targets:
            return
        _check(_unshare(_CLONE_NEWNS), "unshare")
        _check(_mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "make / a slave")
        staged = [os.path.join(self.stage, str(index)) for index in range(len(self.targets))]
        for target, place in zip(self.targets, staged, strict=True):
            _check(_mount(target.encode(), place.encode(), None, _MS_BIND | _MS_REC, None),
                   f"stage {target}")
        for blocker in self.blockers:
            _check(_mount(b"tmpfs", blocker.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                          b"mode=0755"), f"cover {blocker}")
        for target, place in zip(self.targets, staged, strict=True):
            os.makedirs(target, exist_ok=True)
            _check(_mount(place.encode(), target.encode(), None, _MS_BIND | _MS_REC, None),
                   f"expose {target}")


def _remove_stage(stage: str, count: int, owner: int) -> None:
    if os.getpid() != owner:  # a forked child exiting through atexit
        return
    with contextlib.suppress(OSError):
        for index in range(count):
            os.rmdir(os.path.join(stage, str(index)))
        os.rmdir(stage)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def plan(paths: list[str]) -> Exposure:
    """What makes `paths` reachable for another uid (nothing unless we are root)."""
    wanted = {os.path.realpath(p) for p in paths}
    # A path inside another one comes along with it.
    targets = sorted(p for p in wanted
                     if not any(p != other and p.startswith(other + os.sep) for other in wanted))
    blocked = {p: _blocker(p) for p in targets}
    targets = [p for p in targets if blocked[p] is not None]
    blockers = sorted({b for b in blocked.values() if b is not None})
    if not targets or os.getuid() != 0:
        return Exposure((), (), "")
    # Beside no blocker: a stage under one would vanish under its tmpfs ($TMPDIR may be).
    stage = tempfile.mkdtemp(prefix="coop-test-reach-", dir="/tmp")
    for index in range(len(targets)):
        os.mkdir(os.path.join(stage, str(index)))
    atexit.register(_remove_stage, stage, len(targets), os.getpid())
    return Exposure(tuple(blockers), tuple(targets), stage)


EXPOSURE = plan([sys.prefix, sys.base_prefix, str(TREE)])
"""Computed once per test run, before any child is forked."""


def demote(uid: int, gid: int | None = None, exposure: Exposure = EXPOSURE) -> None:
    """A preexec function: become `uid` (no groups) in a namespace where it reaches Python."""
    exposure.enter()
    os.setgroups([])
    os.setgid(uid if gid is None else gid)
    os.setuid(uid)
