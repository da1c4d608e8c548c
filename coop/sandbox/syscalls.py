"""Thin ctypes wrappers over the Linux syscalls the sandbox needs.

Python 3.11 has no `os.unshare`/`os.setns`, and nothing for mount, pivot_root or
capabilities, so they are called through libc. Every wrapper raises `OSError` with errno,
so callers can say which step failed and why.
"""

from __future__ import annotations

import ctypes
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1

_SYSCALLS = {
    # name: (x86_64, aarch64 and the other generic-table arches)
    "pivot_root": (155, 41),
    "capset": (126, 91),
    "mount_setattr": (442, 442),
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _nr(name: str) -> int:
    x86, generic = _SYSCALLS[name]
    return x86 if platform.machine() == "x86_64" else generic


def _check(result: int, what: str, target: str | None = None) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target)


def _b(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {fstype or 'bind'} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_nr("pivot_root"), _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def make_readonly_recursive(target: str) -> None:
    """Make a mount and all its submounts read-only in one call (Linux 5.12+)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(_libc.syscall(_nr("mount_setattr"), -100, _b(target), AT_RECURSIVE,
                         ctypes.byref(attr), ctypes.sizeof(attr)),
           f"make {target} read-only", target)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def drop_all_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    for cap in range(last_cap() + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            pass
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data)), "capset")


def map_ids(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    """Map one uid and one gid in the user namespace this process just unshared.

    A process may write its own maps when they map only its own ids; `setgroups` must be
    denied first for the gid map (user_namespaces(7))."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inside_uid} {outside_uid} 1"),
                       ("gid_map", f"{inside_gid} {outside_gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
