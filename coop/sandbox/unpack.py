"""Unpacking a tar archive into a directory without letting it write anywhere else.

Archives are untrusted: entries with `..`, absolute names, entries under a symlink the
archive made earlier, hard links to outside paths. Every path is checked component by
component with lstat and files are opened with O_NOFOLLOW, so no symlink is ever followed
while unpacking. Device nodes cannot be made rootless and are skipped (and counted).
Ownership is not restored: everything belongs to the unpacking user, which is root inside
the sandbox's outer user namespace.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class UnpackReport:
    files: int = 0
    skipped: list[str] = field(default_factory=list)
    """Entries not unpacked, each with the reason."""


def _clean_name(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _safe_parent(root: str, rel: str) -> bool:
    """Create the parents of `rel` under `root`; False if one of them is not a real dir."""
    current = root
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def _remove_existing(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def unpack_tar(archive: Path, root: Path) -> UnpackReport:
    """Unpack `archive` into the directory `root` (which must exist)."""
    with tarfile.open(archive, "r:*") as tar:
        return unpack_stream(tar, root)


WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def _apply_whiteout(base: str, rel: str, written: set[str]) -> None:
    """OCI whiteouts: `.wh.NAME` deletes NAME from lower layers; `.wh..wh..opq` hides
    everything a lower layer put in its directory (but not this layer's own entries)."""
    parent, _, name = rel.rpartition("/")
    directory = os.path.join(base, parent) if parent else base
    if os.path.islink(directory) or not os.path.isdir(directory):
        return
    if name == OPAQUE:
        for child in os.listdir(directory):
            child_rel = f"{parent}/{child}" if parent else child
            if child_rel not in written:
                _remove_existing(os.path.join(directory, child))
        return
    target = name[len(WHITEOUT):]
    if target and target not in (".", ".."):
        _remove_existing(os.path.join(directory, target))


def unpack_stream(tar: tarfile.TarFile, root: Path, whiteouts: bool = False) -> UnpackReport:
    """Unpack an open archive (streamed or not) into `root`; with `whiteouts`, apply it as
    an OCI layer over what `root` already holds."""
    report = UnpackReport()
    dir_modes: list[tuple[str, int, float]] = []
    base = str(root)
    written: set[str] = set()
    for member in tar:
        rel = _clean_name(member.name)
        if whiteouts and rel is not None and rel.rpartition("/")[2].startswith(WHITEOUT):
            if _safe_parent(base, rel):
                _apply_whiteout(base, rel, written)
            continue
        if rel is not None:
            written.add(rel)
        if rel is None:
            if _clean_name(member.name.strip("/") or ".") is None and member.isdir():
                continue  # the archive's own "./"
            report.skipped.append(f"{member.name}: path leaves the root")
            continue
        if not _safe_parent(base, rel):
            report.skipped.append(f"{member.name}: a parent is a symlink or a file")
            continue
        target = os.path.join(base, rel)
        mode = member.mode & 0o1777  # setuid/setgid bits are never restored
        if member.isdir():
            if not os.path.isdir(target) or os.path.islink(target):
                _remove_existing(target)
                os.mkdir(target, 0o755)
            dir_modes.append((target, mode, member.mtime))
        elif member.isreg():
            _remove_existing(target)
            extracted = tar.extractfile(member)
            assert extracted is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out, extracted:
                while chunk := extracted.read(1 << 20):
                    out.write(chunk)
            os.chmod(target, mode)
            os.utime(target, (member.mtime, member.mtime))
        elif member.issym():
            _remove_existing(target)
            os.symlink(member.linkname, target)
        elif member.islnk():
            source_rel = _clean_name(member.linkname)
            source = os.path.join(base, source_rel) if source_rel else None
            if (source is None or not _safe_parent(base, source_rel or "")
                    or not os.path.lexists(source) or os.path.islink(source)):
                report.skipped.append(f"{member.name}: hard link to {member.linkname} "
                                      "outside the archive or to a link")
                continue
            _remove_existing(target)
            os.link(source, target, follow_symlinks=False)
        elif member.isfifo():
            _remove_existing(target)
            os.mkfifo(target, mode)
        else:
            report.skipped.append(f"{member.name}: device nodes cannot be made rootless")
            continue
        report.files += 1
    for path, mode, mtime in reversed(dir_modes):
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, mode | 0o700)
            os.utime(path, (mtime, mtime))
    return report
