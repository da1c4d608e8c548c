"""`coop init`'s template: each commented option, and every mix of them, works where it sits.

The options are found in the written text itself (a commented `key:` or `- item` and the
commented lines indented under it), so a new option in the template is tested without
touching this file. Uncommenting a top-level key that is already set replaces that line, as
the template's comments say (`image: debian:bookworm` in place of `image: host`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coop.commands.init import AGENTS, init
from coop.config.coopfile import CoopConfig, load_config
from coop.errors import ConfigError
from coop.paths import coop_paths
from tests.helpers import User, busybox_rootfs, registry_server
from tests.oci import Registry, busybox_layer, layer, push_image

IMAGES = ("host", "debian:bookworm", "alpine:3.20", "dir:rootfs", "tar:base.tar")
OPTION = re.compile(r"(?P<indent> *)# (?P<body>(?:- |(?P<key>[a-z_]+):(?: |$)).*)")


@dataclass(frozen=True)
class Option:
    """One commented option: its key ("-" for a list item), indentation and line numbers."""

    key: str
    indent: int
    lines: tuple[int, ...]


def uncomment(line: str) -> str:
    return re.sub(r"^( *)# ?", r"\1", line, count=1)


def options_in(text: str) -> list[Option]:
    lines = text.splitlines()
    found: list[Option] = []
    number = 0
    while number < len(lines):
        match = OPTION.fullmatch(lines[number])
        number += 1
        if not match:
            continue
        indent, block = len(match["indent"]), [number - 1]
        while number < len(lines) and lines[number].lstrip().startswith("#"):
            body = uncomment(lines[number])
            if len(body) - len(body.lstrip()) <= indent:
                break
            block.append(number)
            number += 1
        found.append(Option(match["key"] or "-", indent, tuple(block)))
    return found


def with_options(text: str, chosen: tuple[Option, ...]) -> str:
    lines = text.splitlines()
    replaced: set[int] = set()
    for option in chosen:
        for number in option.lines:
            lines[number] = uncomment(lines[number])
        if option.indent == 0:
            replaced |= {n for n, line in enumerate(lines) if n not in option.lines
                         and re.match(rf"{option.key}:(\s|$)", line)}
    return "\n".join(line for n, line in enumerate(lines) if n not in replaced) + "\n"


def write_template(ws: Path, agent: str, image: str, home: Path,
                   monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HOME", str(home))
    assert init(ws, agent, image, force=True, quiet=True) == 0
    return (ws / "Coopfile").read_text()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    yield ws, home


def load(ws: Path, home: Path, text: str) -> CoopConfig:
    (ws / "Coopfile").write_text(text)
    paths = coop_paths({"COOP_HOME": str(ws.parent / "coop"), "HOME": str(home)})
    return load_config(paths, ws, home=home)


@pytest.mark.parametrize("gitconfig", [True, False], ids=["gitconfig", "no-gitconfig"])
@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_every_mix_of_commented_options_loads(project: tuple[Path, Path], agent: str,
                                              image: str, gitconfig: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ws, home = project
    if gitconfig:
        (home / ".gitconfig").write_text("[user]\n\tname = Me\n")
    text = write_template(ws, agent, image, home, monkeypatch)
    options = options_in(text)
    top = {o.key for o in options if o.indent == 0}
    assert {"packages", "setup", "ports"} <= top
    assert ("image" in top) == (image == "host")  # on host, the image to build on is offered
    assert "allow" in {o.key for o in options}
    baseline = load(ws, home, text)
    assert not baseline.packages and not baseline.setup
    for count in range(1, len(options) + 1):
        for chosen in itertools.combinations(options, count):
            keys = {o.key for o in chosen if o.indent == 0}
            mixed = with_options(text, chosen)
            image_line = re.search(r"^image: *(\S+)", mixed, re.MULTILINE)
            assert image_line is not None
            if image_line[1] == "host" and keys & {"packages", "setup"}:
                key = "packages" if "packages" in keys else "setup"
                line = next(n for n, text_line in enumerate(mixed.splitlines(), start=1)
                            if text_line.startswith(f"{key}:"))
                with pytest.raises(ConfigError) as info:
                    load(ws, home, mixed)
                message = info.value.render()
                assert message.startswith(f"{ws}/Coopfile:{line}:1: `{key}` needs an image"), \
                    (message, mixed)
                assert "e.g. `image: debian:bookworm`" in message
                continue
            try:
                config = load(ws, home, mixed)
            except ConfigError as exc:
                pytest.fail(f"uncommenting {[o.key for o in chosen]} breaks the Coopfile: "
                            f"{exc.render()}\n{mixed}")
            assert bool(config.packages) == ("packages" in keys)
            assert bool(config.setup) == ("setup" in keys)
            assert bool(config.ports) == ("ports" in keys)
            assert bool(config.network_allow) == any(o.key == "allow" for o in chosen)
            added_mounts = sum(o.key in ("mounts", "-") for o in chosen)
            assert len(config.mounts) == len(baseline.mounts) + added_mounts
            if "image" in keys:
                assert config.image == "debian:bookworm"


def test_packages_for_alpine_use_apk_and_its_shell(project: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ws, home = project
    text = write_template(ws, "shell", "alpine:3.20", home, monkeypatch)
    [packages] = [o for o in options_in(text) if o.key == "packages"]
    config = load(ws, home, with_options(text, (packages,)))
    assert config.packages == {"apk": ["git", "ripgrep"]}
    assert config.shell == ["/bin/sh"] and config.agent_command == ["/bin/sh"]


def test_packages_on_host_names_file_line_column_and_the_fix(user: User) -> None:
    (user.workspace / "Coopfile").write_text(
        "image: host\nagent:\n  command: sh\n\n  # tools\n\npackages:\n  apt: [git]\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "touch", "/workspace/ran")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"coop: {user.workspace}/Coopfile:7:1: `packages` needs an image to install into, "
        "and the base here is `host` (this machine's own system, used as it is).\n"
        "Set an OCI image, e.g. `image: debian:bookworm`, or install the packages on the "
        "host and remove `packages`.\n")
    assert not (user.workspace / "ran").exists()


def test_setup_without_an_image_says_the_default_is_host(project: tuple[Path, Path]) -> None:
    ws, home = project
    with pytest.raises(ConfigError) as info:
        load(ws, home, "env: {A: b}\n  # x\nsetup:\n  - echo hi\n")
    assert info.value.render() == (
        f"{ws}/Coopfile:3:1: `setup` needs an image to run in, and no `image:` is set, so "
        "the base is `host` (this machine's own system, used as it is).\n"
        "Set an OCI image, e.g. `image: debian:bookworm`, or run the commands on the host "
        "and remove `setup`.")


def test_empty_packages_on_host_are_fine(project: tuple[Path, Path]) -> None:
    ws, home = project
    assert load(ws, home, "packages: {apt: []}\nsetup: []\n").image == "host"


def test_the_image_may_come_from_an_extended_file(project: tuple[Path, Path]) -> None:
    ws, home = project
    (ws / "base.yaml").write_text("image: debian:bookworm\n")
    config = load(ws, home, "extends: base.yaml\npackages: {apt: [git]}\n")
    assert config.packages == {"apt": ["git"]}
    (ws / "base.yaml").write_text("# shared\nsetup: [echo hi]\n")
    with pytest.raises(ConfigError) as info:
        load(ws, home, "extends: base.yaml\nimage: host\n")
    assert info.value.render().startswith(f"{ws}/base.yaml:2:1: `setup` needs an image")


def test_init_template_with_packages_uncommented_fails_at_that_line(user: User) -> None:
    assert user.coop("init").returncode == 0
    text = (user.workspace / "Coopfile").read_text()
    [packages] = [o for o in options_in(text) if o.key == "packages"]
    (user.workspace / "Coopfile").write_text(with_options(text, (packages,)))
    result = user.coop("run", "--", "true")
    assert result.returncode == 1
    line = packages.lines[0] + 1
    assert result.stderr.decode().startswith(
        f"coop: {user.workspace}/Coopfile:{line}:1: `packages` needs an image to install into")


def test_setup_from_the_template_runs_on_a_dir_image(user: User, world_tmp: Path) -> None:
    busybox_rootfs(world_tmp / "rootfs", user)
    assert user.coop("init", "--image", f"dir:{world_tmp / 'rootfs'}").returncode == 0
    text = (user.workspace / "Coopfile").read_text()
    [setup] = [o for o in options_in(text) if o.key == "setup"]
    (user.workspace / "Coopfile").write_text(with_options(text, (setup,)))
    result = user.coop("run", "--", "cat", "/etc/profile")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"export EDITOR=vi\n"


@pytest.fixture
def registry(world_tmp: Path) -> Iterator[Registry]:
    registry_server()  # or skip, saying what to install
    (world_tmp / "registry").mkdir()
    reg = Registry(world_tmp / "registry")
    push_image(reg.host, "test/busybox", "1", [layer(busybox_layer())])
    yield reg
    reg.stop()


def test_host_template_switched_to_an_oci_image_runs_setup(user: User,
                                                           registry: Registry) -> None:
    assert user.coop("init").returncode == 0
    text = (user.workspace / "Coopfile").read_text()
    chosen = tuple(o for o in options_in(text) if o.key in ("image", "setup"))
    mixed = with_options(text, chosen).replace("image: debian:bookworm",
                                               f"image: {registry.host}/test/busybox:1")
    (user.workspace / "Coopfile").write_text(mixed)
    (user.coop_home / "config.yaml").write_text(
        f"registries:\n  '{registry.host}': {{insecure: true}}\n")
    user.chown(user.workspace)
    user.chown(user.coop_home)
    result = user.coop("run", "--", "cat", "/etc/profile")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"export EDITOR=vi\n"
