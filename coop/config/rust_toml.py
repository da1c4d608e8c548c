"""Reading the Rust implementation's `coop.toml`, so its users can switch (SPEC §3).

Its `[sandbox]` table holds `image`, `agent`, `shell`, `setup` and `mounts`; `[network]`,
`[session]` and `[input_filter]` map onto our keys of the same meaning. tomllib gives no
positions, so each key's line is found in the text (good enough for error messages).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from coop.config.yamlsource import KeyPath, Source
from coop.errors import ConfigError


def _positions(text: str) -> dict[KeyPath, tuple[int, int]]:
    """Line and column of each `key =` under its `[table]` header."""
    positions: dict[KeyPath, tuple[int, int]] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[([A-Za-z0-9_.-]+)\]", line)
        if header:
            table = tuple(header.group(1).split("."))
            positions.setdefault(table, (number, 1))
            continue
        key = re.match(r"(\s*)([A-Za-z0-9_-]+)\s*=", line)
        if key:
            positions.setdefault(table + (key.group(2),), (number, len(key.group(1)) + 1))
    return positions


def _remap(path: KeyPath) -> KeyPath:
    if path[:1] == ("sandbox",) and len(path) > 1:
        return path[1:]
    return path


def _syntax_error(path: Path, text: str, message: str) -> str:
    """`FILE:LINE:COL: invalid TOML: …`, like every other config error. tomllib (3.11) puts
    the position in its message: `Invalid value (at line 3, column 9)`."""
    found = re.fullmatch(r"(.*) \(at (?:line (\d+), column (\d+)|(end of document))\)",
                         message, re.DOTALL)
    if not found:
        return f"{path}: invalid TOML: {message}."
    if found.group(4):  # at the end: the last line, after its last character
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    else:
        line, col = int(found.group(2)), int(found.group(3))
    return f"{path}:{line}:{col}: invalid TOML: {found.group(1)}."


def parse_rust_toml(text: str, path: Path) -> Source:
    """Translate a Rust-coop `coop.toml` into our Coopfile shape."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_error(path, text, str(exc))) from None
    data: dict[str, Any] = {}
    positions = {_remap(k): v for k, v in _positions(text).items()}
    for table, body in raw.items():
        if table == "sandbox" and isinstance(body, dict):
            for key, value in body.items():
                if key == "agent" and isinstance(value, (str, list)):
                    data["agent"] = {"command": value}
                    positions[("agent", "command")] = positions.get(("agent",), (1, 1))
                else:  # unknown keys stay, so validation names them with a did-you-mean
                    data[key] = value
        else:
            data[table] = body
    return Source(path=path, data=data, positions=positions, text=text)
