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
YAML_TAGS = "tag:yaml.org,2002:"


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


def _convert(node: yaml.Node, path: KeyPath, src: Source, loader: Any,
             inside: frozenset[int] = frozenset()) -> Any:
    """`inside` holds the collections being converted: an alias to one of them (`&x [*x]`)
    would recurse for ever."""
    import yaml

    src.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if id(node) in inside:
        raise ConfigError(f"{src.where(path)}: invalid YAML: `{format_keypath(path)}` is an "
                          "alias of a value that contains it.", "Remove that alias.")
    if isinstance(node, yaml.CollectionNode):
        inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, src, loader)
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
            out[key] = _convert(value_node, path + (key,), src, loader, inside)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), src, loader, inside)
                for i, item in enumerate(node.value)]
    return _construct(node, src, loader)


def _tag_name(tag: str) -> str:
    """`!!int` for YAML's own tags, the tag as written otherwise."""
    return "!!" + tag.removeprefix(YAML_TAGS) if tag.startswith(YAML_TAGS) else tag


def _construct(node: yaml.Node, src: Source, loader: Any) -> Any:
    """A scalar's value. An explicit tag (`!!int many`, `!!python/object`) can fail here,
    after the syntax was fine: that is still the file's fault, so say where."""
    import yaml

    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError:
        problem = f"no value of type `{_tag_name(node.tag)}` is allowed in a Coopfile."
        hint = "Write the value without the tag."
    except (ValueError, TypeError, AttributeError, OverflowError):
        problem = f"`{node.value}` is not a valid `{_tag_name(node.tag)}`."
        hint = "Fix the value, or remove the tag to keep it as text."
    mark = node.start_mark
    raise ConfigError(f"{src.path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}",
                      hint) from None


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


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
    except yaml.reader.ReaderError as exc:  # a character YAML forbids: no mark, an index
        line, col = _line_col(text, exc.position)
        code = int(exc.character)
        escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        raise ConfigError(f"{path}:{line}:{col}: invalid YAML: the character U+{code:04X} "
                          "is not allowed.", "Remove it, or write it as an escape inside "
                          f"double quotes (\"{escape}\").") from None
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
    except UnicodeDecodeError as exc:
        good = exc.object[:exc.start].decode("utf-8")
        line, col = _line_col(good, len(good))
        raise ConfigError(f"{path}:{line}:{col}: is not UTF-8 text "
                          f"(byte 0x{exc.object[exc.start]:02x}).",
                          "Save the file as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}.") from None
    if path.suffix == ".toml":
        from coop.config.rust_toml import parse_rust_toml

        return parse_rust_toml(text, path)
    return parse_yaml(text, path)
