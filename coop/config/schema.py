"""The Coopfile's schema: small validators that know where each value came from.

Each `Spec` checks one value and returns it normalised; failures raise a `ConfigError`
that names file, line, column and key path (SPEC §3), with a did-you-mean for unknown
keys. The schema is data, so the same validators serve YAML, TOML and the global config.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coop.config.yamlsource import KeyPath, Source, format_keypath
from coop.errors import ConfigError


@dataclass
class Context:
    """What validators need besides the value: the file and the user's home."""

    src: Source
    home: Path

    def fail(self, keypath: KeyPath, message: str, hint: str = "",
             at_key: bool = False) -> ConfigError:
        return ConfigError(
            f"{self.src.where(keypath, at_key)}: `{format_keypath(keypath)}` {message}", hint)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class Spec:
    """Checks one value; `describe` is used in 'must be …' messages."""

    describe = "a value"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        raise NotImplementedError

    def wrong_type(self, value: Any, path: KeyPath, ctx: Context) -> ConfigError:
        return ctx.fail(path, f"must be {self.describe}, not {_type_name(value)}.")


class Str(Spec):
    describe = "a string"

    def __init__(self, pattern: str | None = None, explain: str = "") -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.explain = explain

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, str):
            raise self.wrong_type(value, path, ctx)
        if self.pattern and not self.pattern.fullmatch(value):
            raise ctx.fail(path, f"is not valid: {value!r} ({self.explain}).")
        return value


class Scalar(Spec):
    """A string, number or boolean, kept as its string form (environment values)."""

    describe = "a string"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise self.wrong_type(value, path, ctx)


class Int(Spec):
    describe = "a whole number"

    def __init__(self, minimum: int = 0, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong_type(value, path, ctx)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            upper = f" and {self.maximum}" if self.maximum is not None else ""
            raise ctx.fail(path, f"must be between {self.minimum}{upper or ' and more'}, "
                                 f"not {value}.")
        return value


class Bool(Spec):
    describe = "true or false"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, bool):
            raise self.wrong_type(value, path, ctx)
        return value


class Enum(Spec):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.describe = "one of " + ", ".join(choices)

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, str):
            raise self.wrong_type(value, path, ctx)
        if value not in self.choices:
            close = difflib.get_close_matches(value, self.choices, n=1)
            hint = f"Did you mean `{close[0]}`?" if close else ""
            raise ctx.fail(path, f"is {value!r}, which is not {self.describe}.", hint)
        return value


class ListOf(Spec):
    def __init__(self, item: Spec, allow_single: bool = False) -> None:
        self.item = item
        self.allow_single = allow_single
        self.describe = f"a list of {item.describe.removeprefix('a ')}s"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if self.allow_single and not isinstance(value, list):
            return [self.item.check(value, path, ctx)]
        if not isinstance(value, list):
            raise self.wrong_type(value, path, ctx)
        return [self.item.check(v, path + (i,), ctx) for i, v in enumerate(value)]


class MapOf(Spec):
    """A mapping with free-form keys (env, registries)."""

    def __init__(self, value: Spec, key_pattern: str | None = None, explain: str = "") -> None:
        self.value = value
        self.key_pattern = re.compile(key_pattern) if key_pattern else None
        self.explain = explain
        self.describe = "a mapping"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, dict):
            raise self.wrong_type(value, path, ctx)
        out = {}
        for key, item in value.items():
            if self.key_pattern and not self.key_pattern.fullmatch(key):
                raise ctx.fail(path + (key,), f"is not a valid name ({self.explain}).",
                               at_key=True)
            out[key] = self.value.check(item, path + (key,), ctx)
        return out


class Fields(Spec):
    """A mapping with known keys; unknown ones get a did-you-mean."""

    describe = "a mapping"

    def __init__(self, fields: dict[str, Spec]) -> None:
        self.fields = fields

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, dict):
            raise self.wrong_type(value, path, ctx)
        out = {}
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, list(self.fields), n=1, cutoff=0.6)
                hint = (f"Did you mean `{format_keypath(path + (close[0],))}`?" if close else
                        "Known keys here: " + ", ".join(sorted(self.fields)) + ".")
                raise ctx.fail(path + (key,), "is not a known key.", hint, at_key=True)
            out[key] = spec.check(item, path + (key,), ctx)
        return out


class Command(Spec):
    """A command: a string (split like a shell would) or a list of arguments."""

    describe = "a command (a string or a list of strings)"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        import shlex

        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                raise ctx.fail(path, f"cannot be split into arguments: {exc}.") from None
        elif isinstance(value, list):
            argv = ListOf(Str()).check(value, path, ctx)
        else:
            raise self.wrong_type(value, path, ctx)
        if not argv:
            raise ctx.fail(path, "is empty.")
        return argv


# registry[:port]/path[:tag][@sha256:hex] — the OCI distribution reference grammar, simplified.
_IMAGE_RE = re.compile(
    r"(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<name>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?")


class ImageRef(Spec):
    describe = "an image: host, dir:PATH, tar:PATH or an OCI reference like node:22-bookworm"

    @staticmethod
    def valid(value: str) -> bool:
        return value == "host" or value.startswith(("dir:", "tar:")) or bool(
            _IMAGE_RE.fullmatch(value))

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, str):
            raise self.wrong_type(value, path, ctx)
        if value == "host":
            return value
        for prefix in ("dir:", "tar:"):
            if value.startswith(prefix):
                target = value[len(prefix):]
                if not target:
                    raise ctx.fail(path, f"needs a path after `{prefix}`.")
                resolved = Path(os.path.expanduser(target))
                if not resolved.is_absolute():
                    resolved = ctx.src.path.parent / resolved
                return prefix + str(resolved)
        if not self.valid(value):
            raise ctx.fail(path, f"is not a valid image reference: {value!r}.",
                           "Use host, dir:PATH, tar:PATH, or a reference such as "
                           "node:22-bookworm or ghcr.io/owner/image:tag.")
        return value


VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MOUNT_OPTIONS = ("ro", "rw", "external")


@dataclass(frozen=True)
class MountSpec:
    """One `src:dst[:opts]` entry, with the source resolved on the host.

    `source` is an absolute host path, or None for a named volume (`volume` set).
    `target` is absolute inside the sandbox, or starts with `~/` (the sandbox home).
    """

    source: str | None
    volume: str | None
    target: str
    read_only: bool
    text: str


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class Mount(Spec):
    describe = "a mount `src:dst[:ro]`"

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        if not isinstance(value, str):
            raise self.wrong_type(value, path, ctx)
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ctx.fail(path, f"is {value!r}; a mount is `src:dst` or `src:dst:ro`.",
                           "Example: ~/.gitconfig:~/.gitconfig:ro")
        src, dst = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) == 3 else []
        for option in options:
            if option not in MOUNT_OPTIONS:
                raise ctx.fail(path, f"has an unknown option {option!r}.",
                               "Options are: " + ", ".join(MOUNT_OPTIONS) + ".")
        if not (dst.startswith("/") or dst == "~" or dst.startswith("~/")):
            raise ctx.fail(path, f"has a target {dst!r} that is not absolute.",
                           "Targets start with / or ~/ (the sandbox user's home).")
        if ".." in Path(dst).parts:
            raise ctx.fail(path, f"has a target {dst!r} with `..` in it.")
        read_only = "ro" in options
        if VOLUME_NAME.fullmatch(src) and src not in (".", ".."):
            return MountSpec(None, src, dst, read_only, value)
        host = Path(str(ctx.home) + src[1:]) if src == "~" or src.startswith("~/") else Path(src)
        if not host.is_absolute():
            host = ctx.src.path.parent / host
        # Resolve symlinks: a link inside the home that points outside it is outside it.
        real = Path(os.path.realpath(host))
        home = Path(os.path.realpath(ctx.home))
        project = Path(os.path.realpath(ctx.src.path.parent))
        if "external" not in options and not (_inside(real, home) or _inside(real, project)):
            shown = f"{src} (which resolves to {real})" if str(real) != src else src
            raise ctx.fail(
                path, f"mounts {shown}, which is outside your home and this project.",
                f"If you mean it, mark it explicitly: `{src}:{dst}:"
                f"{','.join(options + ['external'])}`.")
        return MountSpec(str(real), None, dst, read_only, value)


class Port(Spec):
    """`3000` or `"8080:80"` (host port : sandbox port)."""

    describe = "a port number or \"HOST:SANDBOX\""

    def check(self, value: Any, path: KeyPath, ctx: Context) -> Any:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str):
            raise self.wrong_type(value, path, ctx)
        parts = text.split(":")
        if len(parts) > 2 or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
            raise ctx.fail(path, f"is {value!r}, not a port (1-65535) or \"HOST:SANDBOX\".")
        host, inner = (parts[0], parts[-1])
        return f"{int(host)}:{int(inner)}"


NETWORK_MODES = ("proxy", "none", "host", "veth")
PACKAGE_MANAGERS = ("apt", "apk", "dnf", "pacman", "pip", "npm")

COOPFILE = Fields({
    "extends": ListOf(Str(), allow_single=True),
    "image": ImageRef(),
    "packages": Fields({name: ListOf(Str()) for name in PACKAGE_MANAGERS}),
    "setup": ListOf(Str()),
    "agent": Fields({
        "command": Command(),
        "args": ListOf(Str()),
        "restart": Enum("always", "on-failure", "never"),
        "restart_delay_ms": Int(0, 3_600_000),
    }),
    "shell": Command(),
    "workspace": Fields({
        "mount": Str(),
        "path": Str(r"/.*", "an absolute path inside the sandbox"),
    }),
    "env": MapOf(Scalar(), r"[A-Za-z_][A-Za-z0-9_]*", "letters, digits and _"),
    "mounts": ListOf(Mount()),
    "network": Fields({
        "mode": Enum(*NETWORK_MODES),
        "allow": ListOf(Str(r"(\*\.)?[A-Za-z0-9.:\[\]-]+",
                            "a host name, *.domain wildcard or an IP address")),
    }),
    "ports": ListOf(Port()),
    "input_filter": Fields({
        "ctrl_c": Enum("debounce", "confirm", "pass"),
        "ctrl_c_debounce_ms": Int(0, 60_000),
        "block": ListOf(Str()),
    }),
    "limits": Fields({
        "pids": Int(1), "nofile": Int(16), "memory_mb": Int(16), "cpu_seconds": Int(1),
    }),
    "session": Fields({
        "detach_keys": Str(r"ctrl-[a-z\]\\^_@\[]", "ctrl-<key>, e.g. ctrl-] or ctrl-q"),
    }),
})

GLOBAL_ONLY = {
    "registries": MapOf(Fields({"mirror": Str(r"https?://.+", "an http(s) URL"),
                                "insecure": Bool(), "username": Str(),
                                "password_env": Str(r"[A-Za-z_][A-Za-z0-9_]*",
                                                    "an environment variable's name")})),
    "daemon": Fields({"idle_timeout_s": Int(0)}),
}
GLOBAL_CONFIG = Fields({**COOPFILE.fields, **GLOBAL_ONLY})


def validate(src: Source, spec: Fields, home: Path) -> dict[str, Any]:
    """Validate one file's data; returns it normalised."""
    result: dict[str, Any] = spec.check(src.data, (), Context(src, home))
    return result
