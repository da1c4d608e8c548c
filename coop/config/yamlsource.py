"""YAML loading that remembers where every value came from.

Validation errors must name file, line, column and key path (SPEC §3), so the YAML is
composed into nodes (which carry marks) and converted by hand, recording the position of
each key path. Duplicate keys are an error: YAML silently keeps the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coop.errors import ConfigError

if TYPE_CHECKING:
    import yaml

KeyPath = tuple[str | int, ...]


def _loader_class() -> Any:
    """libyaml's loader when present. yaml is imported here, not at module level: it costs
    about 10 ms, which `coop run` in a project without a Coopfile should not pay."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Source:
    """One parsed config file: its data and the (line, column) of each key path (1-based)."""

    path: Path
    data: dict[str, Any]
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    text: str = ""
    key_positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    """Where each mapping key itself is written (values may start later on the line)."""

    def where(self, keypath: KeyPath, at_key: bool = False) -> str:
        """`file:line:col` for a key path, falling back to its nearest known parent."""
        if at_key and keypath in self.key_positions:
            line, col = self.key_positions[keypath]
            return f"{self.path}:{line}:{col}"
        probe = keypath
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, col = self.positions.get(probe, (1, 1))
        return f"{self.path}:{line}:{col}"


def format_keypath(keypath: KeyPath) -> str:
    """`agent.args[2]` style."""
    out = ""
    for part in keypath:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _convert(node: yaml.Node, path: KeyPath, src: Source, loader: Any) -> Any:
    import yaml

    src.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(
                    f"{src.path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}: "
                    f"keys must be plain strings (at {format_keypath(path)}).")
            if key in out:
                raise ConfigError(
                    f"{src.path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}: "
                    f"duplicate key `{format_keypath(path + (key,))}`.",
                    "Keep one of them.")
            src.key_positions[path + (key,)] = (key_node.start_mark.line + 1,
                                                key_node.start_mark.column + 1)
            out[key] = _convert(value_node, path + (key,), src, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), src, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, path: Path) -> Source:
    """Parse YAML text into a `Source`; syntax errors name the file, line and column."""
    import yaml

    src = Source(path=path, data={}, text=text)
    loader_class = _loader_class()
    try:
        node = yaml.compose(text, Loader=loader_class)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}.") from None
    if node is None:
        return src
    loader = loader_class("")
    try:
        data = _convert(node, (), src, loader)
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: the top level must be a mapping of keys, "
                          f"not a {type(data).__name__}.")
    src.data = data
    return src


def read_source(path: Path) -> Source:
    """Read and parse a YAML or TOML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}.") from None
    if path.suffix == ".toml":
        from coop.config.rust_toml import parse_rust_toml

        return parse_rust_toml(text, path)
    return parse_yaml(text, path)
