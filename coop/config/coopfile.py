"""Finding, loading, composing and merging Coopfiles into one `CoopConfig` (SPEC §3).

Merge order, lowest first: built-in defaults < global config < each `extends` file (in
order, recursively) < the Coopfile < CLI flags. Mappings merge key by key; the lists named
in `APPENDING_LISTS` append with duplicates dropped; everything else replaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coop.config.schema import COOPFILE, GLOBAL_CONFIG, MountSpec, validate
from coop.config.yamlsource import Source, read_source
from coop.errors import ConfigError
from coop.paths import CoopPaths

COOPFILE_NAMES = ("Coopfile", "coop.yaml", "coop.toml")

# Key paths whose lists append when merged; `*` matches any key at that level.
APPENDING_LISTS = {("setup",), ("mounts",), ("network", "allow"), ("input_filter", "block"),
                   ("packages", "*"), ("ports",)}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _default_shell() -> list[str]:
    return ["/bin/bash"] if os.path.exists("/bin/bash") else ["/bin/sh"]


def builtin_defaults() -> dict[str, Any]:
    """What applies with no config at all."""
    return {
        "image": "host",
        "agent": {"restart": "on-failure", "restart_delay_ms": 1000},
        "workspace": {"path": "/workspace"},
        "network": {"mode": "proxy", "allow": []},
        "input_filter": {"ctrl_c": "debounce", "ctrl_c_debounce_ms": 500, "block": []},
        "limits": {"pids": 4096, "nofile": 4096},
        "session": {"detach_keys": "ctrl-]"},
        "env": {},
    }


def _appends(path: tuple[str, ...]) -> bool:
    return any(len(p) == len(path) and all(a in ("*", b) for a, b in zip(p, path, strict=True))
               for p in APPENDING_LISTS)


def merge(low: dict[str, Any], high: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge `high` over `low` by the rules above; neither input is modified."""
    out = dict(low)
    for key, value in high.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, here)
        elif isinstance(value, list) and isinstance(out.get(key), list) and _appends(here):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


@dataclass
class CoopConfig:
    """The merged, validated configuration of one workspace."""

    image: str = "host"
    packages: dict[str, list[str]] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    agent_command: list[str] = field(default_factory=_default_shell)
    agent_restart: str = "on-failure"
    agent_restart_delay_ms: int = 1000
    shell: list[str] = field(default_factory=_default_shell)
    workspace: Path = field(default_factory=Path.cwd)
    workspace_path: str = "/workspace"
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[MountSpec] = field(default_factory=list)
    network_mode: str = "proxy"
    network_allow: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    ctrl_c: str = "debounce"
    ctrl_c_debounce_ms: int = 500
    block: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    detach_keys: str = "ctrl-]"
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)
    daemon_idle_timeout_s: int = 30
    sources: list[Path] = field(default_factory=list)
    """Every file that contributed, lowest first (for content hashes and `coop status`)."""


def find_coopfile(directory: Path) -> Path | None:
    """The Coopfile of a workspace directory, if it has one."""
    for name in COOPFILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


Loaded = list[tuple[Source, dict[str, Any]]]
"""Each file read, lowest first, with its own validated data (to say where a key came from)."""


def _load_chain(path: Path, home: Path, stack: list[Path], sources: list[Path],
                loaded: Loaded) -> dict[str, Any]:
    """Load `path` and, before it, everything it extends (depth first)."""
    src = read_source(path)
    data = validate(src, COOPFILE, home)
    own = dict(data)
    merged: dict[str, Any] = {}
    for index, entry in enumerate(data.pop("extends", [])):
        target = Path(os.path.expanduser(entry))
        if not target.is_absolute():
            target = path.parent / target
        target = Path(os.path.realpath(target))
        where = src.where(("extends", index))
        if target in stack:
            cycle = " -> ".join(str(p) for p in stack[stack.index(target):] + [target])
            raise ConfigError(f"{where}: `extends` makes a cycle: {cycle}.",
                              "Remove one of the extends entries so the chain ends.")
        if not target.is_file():
            raise ConfigError(f"{where}: `extends[{index}]` names {target}, which does not exist.",
                              "Fix the path (it is relative to the file that extends it).")
        merged = merge(merged, _load_chain(target, home, stack + [target], sources, loaded))
    sources.append(path)
    loaded.append((src, own))
    return merge(merged, data)


BUILD_KEYS = {"packages": "install into", "setup": "run in"}


def _has_steps(key: str, value: Any) -> bool:
    if key == "packages":
        return isinstance(value, dict) and any(value.values())
    return bool(value)


def check_base_fits(merged: dict[str, Any], loaded: Loaded) -> None:
    """`packages` and `setup` build layers over an image; `image: host` is the machine's own
    system, which coop never writes. Say so at load time, at the key that asks for a build
    (in the highest file that sets it), rather than later when the build starts."""
    if merged.get("image", "host") != "host":
        return
    for key, purpose in BUILD_KEYS.items():
        if not _has_steps(key, merged.get(key)):
            continue
        src = next((src for src, data in reversed(loaded) if _has_steps(key, data.get(key))),
                   loaded[-1][0] if loaded else None)
        image_set = any("image" in data for _, data in loaded)
        base = ("the base here is `host`" if image_set
                else "no `image:` is set, so the base is `host`")
        fix = "install the packages" if key == "packages" else "run the commands"
        where = src.where((key,), at_key=True) if src else f"the session's `{key}`"
        raise ConfigError(
            f"{where}: `{key}` needs an image to {purpose}, and "
            f"{base} (this machine's own system, used as it is).",
            f"Set an OCI image, e.g. `image: debian:bookworm`, or {fix} on the host "
            f"and remove `{key}`.")


def _to_config(data: dict[str, Any], workspace: Path, sources: list[Path]) -> CoopConfig:
    agent = data.get("agent", {})
    network = data.get("network", {})
    flt = data.get("input_filter", {})
    ws = data.get("workspace", {})
    shell = data.get("shell") or _default_shell()
    return CoopConfig(
        image=data.get("image", "host"),
        packages=data.get("packages", {}),
        setup=data.get("setup", []),
        agent_command=list(agent.get("command") or shell) + list(agent.get("args", [])),
        agent_restart=agent.get("restart", "on-failure"),
        agent_restart_delay_ms=agent.get("restart_delay_ms", 1000),
        shell=shell,
        workspace=workspace,
        workspace_path=ws.get("path", "/workspace"),
        env=data.get("env", {}),
        mounts=data.get("mounts", []),
        network_mode=network.get("mode", "proxy"),
        network_allow=network.get("allow", []),
        ports=data.get("ports", []),
        ctrl_c=flt.get("ctrl_c", "debounce"),
        ctrl_c_debounce_ms=flt.get("ctrl_c_debounce_ms", 500),
        block=flt.get("block", []),
        limits=data.get("limits", {}),
        detach_keys=data.get("session", {}).get("detach_keys", "ctrl-]"),
        registries=data.get("registries", {}),
        daemon_idle_timeout_s=data.get("daemon", {}).get("idle_timeout_s", 30),
        sources=sources,
    )


def load_config(paths: CoopPaths, workspace: Path | None = None, coopfile: Path | None = None,
                overrides: dict[str, Any] | None = None, home: Path | None = None) -> CoopConfig:
    """Load the effective config for a workspace.

    `coopfile` (from `-f`) wins over the one found in `workspace`; `overrides` are the CLI
    flags, in Coopfile shape. A workspace without a Coopfile gets defaults + global config.
    """
    home = home or Path(os.path.expanduser("~"))
    workspace_given = workspace is not None
    workspace = Path(os.path.realpath(workspace or Path.cwd()))
    try:
        os.listdir(workspace)
    except OSError as exc:
        raise ConfigError(f"cannot use {workspace} as the workspace: {exc.strerror}.",
                          "Pass a directory you can read and write with -w.") from None
    merged = builtin_defaults()
    sources: list[Path] = []
    loaded: Loaded = []
    if paths.config_file.is_file():
        src = read_source(paths.config_file)
        data = validate(src, GLOBAL_CONFIG, home)
        merged = merge(merged, data)
        sources.append(paths.config_file)
        loaded.append((src, data))
    if coopfile is None:
        coopfile = find_coopfile(workspace)
    elif not coopfile.is_file():
        raise ConfigError(f"{coopfile}: no such file.", "Check the path given to -f.")
    if coopfile is not None:
        coopfile = Path(os.path.realpath(coopfile))
        merged = merge(merged, _load_chain(coopfile, home, [coopfile], sources, loaded))
        mount = merged.get("workspace", {}).get("mount")
        if mount and not workspace_given:
            workspace = Path(os.path.realpath(coopfile.parent / os.path.expanduser(mount)))
            if not workspace.is_dir():
                raise ConfigError(f"{coopfile}: `workspace.mount` is {mount!r}, and {workspace} "
                                  "is not a directory.")
    if overrides:
        merged = merge(merged, overrides)
    check_base_fits(merged, loaded)
    return _to_config(merged, workspace, sources)

