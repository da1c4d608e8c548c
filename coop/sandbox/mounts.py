"""The sandbox's filesystem as a list of small mount operations.

Each operation describes itself (`describe()`), so a plan can be printed and unit-tested
as data; `apply(stage)` performs it under the staging root inside the new mount namespace,
where the process is root of the outer user namespace. Targets are relative to the stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from coop.sandbox import syscalls as sc

_NOSUID_NODEV = sc.MS_NOSUID | sc.MS_NODEV


def _target(stage: str, dst: str) -> str:
    return os.path.join(stage, dst.lstrip("/")) if dst.strip("/") else stage


def _ensure(path: str, directory: bool = True) -> None:
    """Create a mount point on the stage (tmpfs or prepared upper dirs)."""
    if directory:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


class MountOp:
    """One step of building the sandbox's root."""

    def apply(self, stage: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Tmpfs(MountOp):
    dst: str
    mode: str = "0755"
    size: str | None = None

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        _ensure(target)
        opts = f"mode={self.mode}" + (f",size={self.size}" if self.size else "")
        sc.mount("tmpfs", target, "tmpfs", _NOSUID_NODEV, opts)

    def describe(self) -> str:
        return f"tmpfs {self.dst} mode={self.mode}"


@dataclass(frozen=True)
class Overlay(MountOp):
    """Copy-on-write over read-only lower layers; writes land in `upper`."""

    dst: str
    lower: tuple[str, ...]
    upper: str
    work: str

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        _ensure(target)
        lowers = ":".join(lower.replace(",", "\\,").replace(":", "\\:") for lower in self.lower)
        sc.mount("overlay", target, "overlay", sc.MS_NOSUID,
                 f"lowerdir={lowers},upperdir={self.upper},workdir={self.work},userxattr")

    def describe(self) -> str:
        return f"overlay {self.dst} lower={':'.join(self.lower)} upper={self.upper}"


@dataclass(frozen=True)
class Bind(MountOp):
    """A host path at `dst`; `read_only` makes it and every submount read-only."""

    src: str
    dst: str
    read_only: bool = False
    is_dir: bool = True

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        _ensure(target, self.is_dir)
        sc.mount(self.src, target, None, sc.MS_BIND | sc.MS_REC)
        if self.read_only:
            make_read_only(target)

    def describe(self) -> str:
        return f"bind {self.src} -> {self.dst}{' (ro)' if self.read_only else ''}"


def make_read_only(target: str) -> None:
    """Read-only for a bind and its submounts, keeping flags the kernel locked."""
    try:
        sc.make_readonly_recursive(target)
        return
    except OSError:
        pass  # kernel < 5.12: remount each mount, preserving its locked flags
    for mount_point in [target] + _submounts(target):
        flags = os.statvfs(mount_point).f_flag
        keep = sum(bit for bit, st in ((sc.MS_NOSUID, os.ST_NOSUID), (sc.MS_NODEV, os.ST_NODEV),
                                       (sc.MS_NOEXEC, os.ST_NOEXEC),
                                       (sc.MS_NOATIME, os.ST_NOATIME),
                                       (sc.MS_NODIRATIME, os.ST_NODIRATIME),
                                       (sc.MS_RELATIME, os.ST_RELATIME)) if flags & st)
        sc.mount(None, mount_point, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | keep)


def _submounts(target: str) -> list[str]:
    prefix = target.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return [p for p in points if p.startswith(prefix)]


@dataclass(frozen=True)
class Symlink(MountOp):
    target: str
    dst: str

    def apply(self, stage: str) -> None:
        path = _target(stage, self.dst)
        if not os.path.lexists(path):
            os.symlink(self.target, path)

    def describe(self) -> str:
        return f"symlink {self.dst} -> {self.target}"


@dataclass(frozen=True)
class Proc(MountOp):
    """A fresh procfs: it shows the sandbox's own PID namespace only."""

    dst: str = "/proc"

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        _ensure(target)
        sc.mount("proc", target, "proc", _NOSUID_NODEV | sc.MS_NOEXEC)

    def describe(self) -> str:
        return f"proc {self.dst}"


@dataclass(frozen=True)
class Sysfs(MountOp):
    """Read-only sysfs: fresh when the sandbox owns its network namespace, else bound."""

    own_netns: bool
    dst: str = "/sys"

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        _ensure(target)
        if self.own_netns:
            try:
                sc.mount("sysfs", target, "sysfs", _NOSUID_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)
                return
            except OSError:
                pass
        Bind("/sys", self.dst, read_only=True).apply(stage)

    def describe(self) -> str:
        return f"sysfs {self.dst} (ro)"


DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class Dev(MountOp):
    """A minimal /dev: the safe device nodes, a private devpts, shm and the std links."""

    dst: str = "/dev"

    def apply(self, stage: str) -> None:
        dev = _target(stage, self.dst)
        _ensure(dev)
        sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0755")
        for name in DEVICES:
            node = os.path.join(dev, name)
            _ensure(node, directory=False)
            sc.mount(f"/dev/{name}", node, None, sc.MS_BIND)
        pts = os.path.join(dev, "pts")
        os.mkdir(pts, 0o755)
        sc.mount("devpts", pts, "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620")
        os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
        Tmpfs("shm", "1777").apply(dev)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, os.path.join(dev, name))

    def describe(self) -> str:
        return f"dev {self.dst} ({', '.join(DEVICES)}, pts, shm)"


@dataclass(frozen=True)
class Mask(MountOp):
    """Hide a path: an empty read-only tmpfs over a directory, /dev/null over a file."""

    dst: str

    def apply(self, stage: str) -> None:
        target = _target(stage, self.dst)
        if os.path.islink(target) or not os.path.lexists(target):
            return
        if os.path.isdir(target):
            sc.mount("tmpfs", target, "tmpfs", _NOSUID_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY,
                     "mode=0755,size=4k")
        else:
            sc.mount("/dev/null", target, None, sc.MS_BIND)

    def describe(self) -> str:
        return f"mask {self.dst}"


@dataclass(frozen=True)
class ReadOnlyRoot(MountOp):
    """The assembled root tmpfs itself becomes read-only (its contents stay writable)."""

    def apply(self, stage: str) -> None:
        sc.mount(None, stage, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _NOSUID_NODEV)

    def describe(self) -> str:
        return "remount / read-only"
