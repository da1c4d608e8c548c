"""Who the sandboxed command runs as: the invoking user's own uid, gid and name.

The user may have no passwd entry (containers, throwaway test uids); then the name comes
from `$USER`, else "user", and the home from `$HOME` when it is a real directory.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str
    home: str
    """The home directory path, the same inside the sandbox as on the host."""
    host_home: str
    """The home on the host (masked inside), used to expand `~` in mount sources."""


def current_identity(environ: Mapping[str, str] | None = None) -> Identity:
    environ = os.environ if environ is None else environ
    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = environ.get("USER") or "user", ""
    env_home = environ.get("HOME", "")
    if env_home and os.path.isabs(env_home):
        home = env_home
    host_home = home
    if not home or home in ("/", "/nonexistent") or not os.path.isabs(home):
        home = "/root" if uid == 0 else f"/home/{name}"
    return Identity(uid, gid, name, os.path.normpath(home), host_home or home)


def passwd_with(existing: str, ident: Identity, shell: str) -> str:
    """`/etc/passwd` of the base with the user's entry put first (replacing its uid)."""
    lines = [line for line in existing.splitlines()
             if line and line.split(":")[0] != ident.name
             and (line.split(":") + ["", "", ""])[2] != str(ident.uid)]
    entry = f"{ident.name}:x:{ident.uid}:{ident.gid}:{ident.name}:{ident.home}:{shell}"
    return "\n".join([entry] + lines) + "\n"


def group_with(existing: str, ident: Identity) -> str:
    lines = [line for line in existing.splitlines()
             if line and (line.split(":") + ["", "", ""])[2] != str(ident.gid)]
    return "\n".join([f"{ident.name}:x:{ident.gid}:"] + lines) + "\n"
