"""docs/coopfile.md against the code: every key the schema knows is in its tables, nothing
else is, each enum lists exactly its choices, and each stated default is what a user gets
with no config at all. A change to the schema or a default fails here until the reference
says it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from coop.config.coopfile import CoopConfig, load_config
from coop.config.schema import (
    COOPFILE,
    GLOBAL_CONFIG,
    PACKAGE_MANAGERS,
    Context,
    Enum,
    Fields,
    MapOf,
    Spec,
)
from coop.config.yamlsource import Source
from coop.paths import CoopPaths, coop_paths

DOC = Path(__file__).resolve().parent.parent / "docs" / "coopfile.md"
ROW = re.compile(r"\| `([^`]+)` \| (.*?) \| (.*?) \|.*\|")


def doc_rows() -> dict[str, tuple[str, str]]:
    """Each documented key (braces expanded) → its type and default cells."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        found = ROW.fullmatch(line)
        if not found:
            continue
        key, type_cell, default = found.groups()
        braces = re.fullmatch(r"(.*)\{(.*)\}(.*)", key)
        names = ([braces.group(1) + n + braces.group(3) for n in braces.group(2).split(",")]
                 if braces else [key])
        for name in names:
            assert name not in rows, f"{name} is documented twice"
            rows[name] = (type_cell, default)
    return rows


def schema_keys(spec: Fields, prefix: str = "") -> Iterator[tuple[str, Spec]]:
    """Every leaf key of the schema; a mapping of named entries (registries) is `HOST`."""
    for name, sub in spec.fields.items():
        key = prefix + name
        if isinstance(sub, Fields):
            yield from schema_keys(sub, key + ".")
        elif isinstance(sub, MapOf) and isinstance(sub.value, Fields):
            yield from schema_keys(sub.value, key + ".HOST.")
        else:
            yield key, sub


SCHEMA = dict(schema_keys(GLOBAL_CONFIG))


def test_every_schema_key_is_documented_and_nothing_else() -> None:
    documented = set(doc_rows())
    assert sorted(set(SCHEMA) - documented) == [], "keys missing from docs/coopfile.md"
    assert sorted(documented - set(SCHEMA)) == [], "documented keys the schema does not know"
    coopfile_only = {key for key, _ in schema_keys(COOPFILE)}
    assert coopfile_only <= documented


def test_each_enum_lists_exactly_its_choices() -> None:
    for key, (type_cell, _) in doc_rows().items():
        spec = SCHEMA[key]
        if isinstance(spec, Enum):
            listed = re.findall(r"`([^`]+)`", type_cell)
            assert listed == list(spec.choices), f"`{key}`: the type column says {type_cell}"


@dataclass
class Effective:
    """What a user gets in an empty project with no global config."""

    config: CoopConfig
    paths: CoopPaths
    project: Path


@pytest.fixture
def effective(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Effective:
    monkeypatch.delenv("COOP_DAEMON_IDLE_TIMEOUT", raising=False)
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir()
    project.mkdir()
    paths = coop_paths({"COOP_HOME": str(tmp_path / "coop"), "HOME": str(home)})
    return Effective(load_config(paths, project, home=home), paths, project)


def _idle_timeout(e: Effective) -> Any:
    from coop.daemon.server import _idle_timeout

    return int(_idle_timeout(e.paths))


def _get(attribute: str, key: str) -> Callable[[Effective], Any]:
    return lambda e: getattr(e.config, attribute).get(key)


def _no_registries(e: Effective) -> Any:
    return e.config.registries or None


# Where each key's value ends up, in the form the schema normalises it to.
EFFECTIVE: dict[str, Callable[[Effective], Any]] = {
    "extends": lambda e: None,
    "image": lambda e: e.config.image,
    **{f"packages.{name}": _get("packages", name) for name in PACKAGE_MANAGERS},
    "setup": lambda e: e.config.setup,
    "agent.command": lambda e: e.config.agent_command,
    "agent.args": lambda e: e.config.agent_command[len(e.config.shell):],
    "agent.restart": lambda e: e.config.agent_restart,
    "agent.restart_delay_ms": lambda e: e.config.agent_restart_delay_ms,
    "shell": lambda e: e.config.shell,
    "workspace.mount": lambda e: os.path.relpath(e.config.workspace, e.project),
    "workspace.path": lambda e: e.config.workspace_path,
    "env": lambda e: e.config.env,
    "mounts": lambda e: e.config.mounts,
    "network.mode": lambda e: e.config.network_mode,
    "network.allow": lambda e: e.config.network_allow,
    "ports": lambda e: e.config.ports,
    "input_filter.ctrl_c": lambda e: e.config.ctrl_c,
    "input_filter.ctrl_c_debounce_ms": lambda e: e.config.ctrl_c_debounce_ms,
    "input_filter.block": lambda e: e.config.block,
    **{f"limits.{name}": _get("limits", name)
       for name in ("pids", "nofile", "memory_mb", "cpu_seconds")},
    "session.detach_keys": lambda e: e.config.detach_keys,
    **{f"registries.HOST.{name}": _no_registries
       for name in ("mirror", "insecure", "username", "password_env")},
    "daemon.idle_timeout_s": _idle_timeout,
}


def test_every_documented_default_is_the_codes(effective: Effective, tmp_path: Path) -> None:
    ctx = Context(Source(path=tmp_path / "project" / "Coopfile", data={}), tmp_path / "home")
    wrong = []
    for key, (_, cell) in doc_rows().items():
        actual = EFFECTIVE[key](effective)
        if cell == "—":
            if actual not in (None, [], {}):
                wrong.append(f"`{key}`: documented without a default; the code gives {actual!r}")
            continue
        alias = re.fullmatch(r"as `([^`]+)`", cell)
        if alias:
            expected = EFFECTIVE[alias.group(1)](effective)
        else:
            value = re.match(r"`([^`]+)`", cell)
            if not value:
                wrong.append(f"`{key}`: the default {cell!r} is not `VALUE`, `as KEY` or —")
                continue
            if key == "shell" and not os.path.exists("/bin/bash"):
                continue  # the documented fallback applies on this machine
            # The documented value goes through the key's own validator, as a Coopfile's
            # would: it must be valid, and it is compared in the form the code keeps.
            expected = SCHEMA[key].check(yaml.safe_load(value.group(1)), tuple(key.split(".")),
                                         ctx)
        if actual != expected:
            wrong.append(f"`{key}`: documented {cell}, the code gives {actual!r}")
    assert wrong == [], "\n".join(wrong)
