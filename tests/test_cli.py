"""The command line itself: help, import weight, init, completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import COOP, User, need


def test_importing_the_cli_loads_no_heavy_packages() -> None:
    code = ("import sys, coop.cli; heavy = {'textual', 'aiohttp', 'rich', 'pyroute2', "
            "'asyncio'} & set(sys.modules); print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout == b"[]\n"


def _subcommands() -> list[list[str]]:
    import argparse

    from coop.cli import build_parser

    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [[]] + [[name] for name in actions[0].choices]


@pytest.mark.parametrize("command", _subcommands())
def test_every_help_has_examples(command: list[str]) -> None:
    result = subprocess.run(COOP + command + ["--help"], capture_output=True)
    assert result.returncode == 0
    assert b"examples:" in result.stdout


def test_every_option_has_a_help_text() -> None:
    """`coop X --help` explains each option and argument of every command."""
    import argparse

    from coop.cli import build_parser

    missing = []
    pending = [("coop", build_parser())]
    while pending:
        prog, parser = pending.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{prog} {choice.dest}" for choice in action._choices_actions
                            if not choice.help]
                pending += [(f"{prog} {name}", sub) for name, sub in action.choices.items()]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_version() -> None:
    result = subprocess.run(COOP + ["--version"], capture_output=True)
    assert result.stdout.startswith(b"coop 0.")


def test_usage_error_exits_2() -> None:
    result = subprocess.run(COOP + ["run", "--network", "bogus"], capture_output=True)
    assert result.returncode == 2
    assert b"invalid choice: 'bogus'" in result.stderr


def test_init_writes_a_valid_coopfile_and_refuses_to_overwrite(user: User) -> None:
    result = user.coop("init", "--agent", "claude")
    assert result.returncode == 0, result.stderr
    text = (user.workspace / "Coopfile").read_text()
    assert "command: claude" in text and "ANTHROPIC_API_KEY: $ANTHROPIC_API_KEY" in text
    again = user.coop("init")
    assert again.returncode == 1
    assert b"already exists; not replacing it." in again.stderr
    assert (user.workspace / "Coopfile").read_text() == text
    # the written file is valid and runs
    ran = user.coop("run", "--", "true", env=user.env(ANTHROPIC_API_KEY="k"))
    assert ran.returncode == 0, ran.stderr
    forced = user.coop("init", "--force", "--agent", "aider")
    assert forced.returncode == 0
    assert "command: aider" in (user.workspace / "Coopfile").read_text()


def test_init_rejects_a_bad_image(user: User) -> None:
    result = user.coop("init", "--image", "Not An Image")
    assert result.returncode == 1
    assert b"is not a valid image" in result.stderr
    assert not (user.workspace / "Coopfile").exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_the_commands(shell: str) -> None:
    result = subprocess.run(COOP + ["completion", shell], capture_output=True, check=True)
    for word in (b"run", b"init", b"doctor", b"network", b"workspace"):
        assert word in result.stdout


def test_bash_completion_completes_subcommands(tmp_path: object) -> None:
    bash = need("bash", install="apt-get install bash")
    script = subprocess.run(COOP + ["completion", "bash"], capture_output=True, check=True)
    probe = (script.stdout.decode() + '\nCOMP_WORDS=(coop do); COMP_CWORD=1; _coop; '
             'echo "${COMPREPLY[@]}"\nCOMP_WORDS=(coop run --net); COMP_CWORD=2; _coop; '
             'echo "${COMPREPLY[@]}"\n')
    result = subprocess.run([bash, "-c", probe], capture_output=True, check=True)
    assert result.stdout.decode().split("\n")[:2] == ["doctor", "--network"]


def test_a_reader_that_leaves_early_is_not_an_error(session_user: User) -> None:
    started = session_user.coop("-d", "-n", "loud", "--", "sh", "-c",
                                "yes 'a line of output' | head -n 40000; exec sleep 1000")
    assert started.returncode == 0, started.stderr
    # All 40000 lines written (far more than a pipe holds), so that `head` leaves early.
    total = 40000 * len(b"a line of output\r\n")
    deadline = time.monotonic() + 120
    while json.loads(session_user.coop("ls", "--json").stdout)[0]["ptys"][0][
            "output_bytes"] < total:
        assert time.monotonic() < deadline, "the agent did not print its lines"
        time.sleep(0.1)
    command = " ".join(COOP) + " logs loud | head -n 1"
    result = session_user.run(["sh", "-c", command])
    assert result.stdout == b"a line of output\n"
    assert result.stderr == b""  # no "internal error: BrokenPipeError"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this tree, as `pip wheel --no-deps .` makes it."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(
        ".venv", "node_modules", ".git", "build", "*.egg-info", "__pycache__", ".*_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr.decode()[-2000:]
    [found] = (tmp_path / "dist").glob("coop-*.whl")
    return found


def test_a_built_wheel_carries_the_browser_page(wheel: Path) -> None:
    """`pip install` of a wheel needs no Node: the page is inside it (docs/web.md)."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "app.js", "app.css", "manifest.webmanifest", "icon.svg"):
        assert f"coop/web/static/{asset}" in names
    assert not any(name.startswith("web/") for name in names)  # sources stay out


def test_a_built_wheel_carries_its_license(wheel: Path) -> None:
    """The MIT licence travels with every copy, and the metadata names it in SPDX form
    (the table form of `project.license` is deprecated)."""
    import zipfile

    archive = zipfile.ZipFile(wheel)
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    licence = archive.read(metadata.replace("METADATA", "licenses/LICENSE")).decode()
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 the coop authors\n")
