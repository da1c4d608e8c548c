"""Every file coop keeps on the host, derived in one place (SPEC §2.1).

`COOP_HOME=DIR` puts everything under DIR (`DIR/config.yaml`, `DIR/data`, `DIR/state`,
`DIR/run`); tests and parallel installs rely on it. Otherwise the XDG base directories
apply. The runtime dir holds sockets, so it is created 0700 and refused when it is a
symlink or owned by someone else: another user must not be able to pre-create it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from coop.errors import CoopError


@dataclass(frozen=True)
class CoopPaths:
    """Where coop's config, data, state and runtime files live for this user."""

    config_file: Path
    data_dir: Path
    state_dir: Path
    run_dir: Path

    @property
    def volumes_dir(self) -> Path:
        """Named volumes, kept across sessions."""
        return self.data_dir / "volumes"

    @property
    def bases_dir(self) -> Path:
        """Unpacked bases (tarballs, later OCI images and built layers)."""
        return self.data_dir / "bases"

    @property
    def sessions_dir(self) -> Path:
        """Per-session upper dirs (a session's writes outside the workspace)."""
        return self.data_dir / "sessions"

    @property
    def daemon_log(self) -> Path:
        return self.state_dir / "daemon.log"

    def all_dirs(self) -> tuple[Path, ...]:
        """Everything coop owns; the sandbox masks whichever of these it would expose."""
        return (self.config_file.parent, self.data_dir, self.state_dir, self.run_dir)


def _xdg(env: dict[str, str] | os._Environ[str], name: str, fallback: str) -> Path:
    value = env.get(name, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path(env.get("HOME") or os.path.expanduser("~")) / fallback


def coop_paths(env: dict[str, str] | os._Environ[str] | None = None) -> CoopPaths:
    """Resolve coop's paths from the environment (nothing is created)."""
    env = os.environ if env is None else env
    home = env.get("COOP_HOME")
    if home:
        root = Path(home).absolute()
        return CoopPaths(root / "config.yaml", root / "data", root / "state", root / "run")
    runtime = env.get("XDG_RUNTIME_DIR", "")
    run_dir = (
        Path(runtime) / "coop"
        if runtime and os.path.isabs(runtime)
        else Path(f"/tmp/coop-{os.getuid()}")
    )
    return CoopPaths(
        config_file=_xdg(env, "XDG_CONFIG_HOME", ".config") / "coop" / "config.yaml",
        data_dir=_xdg(env, "XDG_DATA_HOME", ".local/share") / "coop",
        state_dir=_xdg(env, "XDG_STATE_HOME", ".local/state") / "coop",
        run_dir=run_dir,
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) 0700 and check that it is ours and not a symlink."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise CoopError(
            f"cannot create {path}: {exc.strerror}.",
            "Set COOP_HOME to a directory you own, or fix the permissions.",
        ) from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise CoopError(f"{path} is not a plain directory (a symlink?); refusing to use it.",
                        "Remove it and run coop again.")
    if st.st_uid != os.getuid():
        raise CoopError(f"{path} belongs to uid {st.st_uid}, not to you; refusing to use it.",
                        "Remove it (as its owner) or set COOP_HOME.")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
