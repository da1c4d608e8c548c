"""Snapshot tests of the TUI: SVG screenshots compared with the files under snapshots/.

Deterministic by construction: fixed terminal size, a fixed clock (ages read 0s), the
workspace at ~/project of the test's own home (the TUI shows paths under your home from
~, so the text is the same for every run and user while each test has its own directory),
scripted sessions, no blinking cursor, and every screenshot taken once the screen has
settled: what it waits for is a condition, never a time (a session's waiting marker comes
after 3 s of quiet, so the shots wait for it). The app runs as the unprivileged test user
against a real daemon. `COOP_UPDATE_SNAPSHOTS=1` rewrites the files; review the diff like
code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import COOP, User

SNAPSHOTS = Path(__file__).resolve().parent.parent / "snapshots"
COLOURS = r"""printf '\033[?1049h\033[2J\033[H\033[1;44;37m coop snapshot \033[0m\n\n'
printf '  \033[31mred\033[0m \033[32mgreen\033[0m \033[33myellow\033[0m \033[1mbold\033[0m '
printf '\033[4munderline\033[0m \033[7mreverse\033[0m\n\n  \033[38;5;208m256 colours\033[0m '
printf '\033[38;2;120;200;255mtruecolor\033[0m  wide: 中文\n'
exec sleep 1000
"""

SCRIPT = """
import asyncio, json, sys
from textual.widgets import Input
from coop.tui.app import CoopApp
from coop.tui.terminal import Terminal
Input.cursor_blink = False

def marked(app):
    rows = [app.table.get_row_at(i) for i in range(app.table.row_count)]
    return bool(rows) and all(str(row[0]) == "●" for row in rows)

def shown(app, text):
    focused = app.screen.focused
    return isinstance(focused, Terminal) and any(text in line for line in focused.text())

async def until(pilot, check, what):
    for _ in range(1200):  # two minutes: a loaded machine is slow, not wrong
        if check():
            return
        await pilot.pause(0.1)
    sys.exit(f"the screen never got ready: {what}")

async def main():
    app = CoopApp(clock=lambda: 0.0)
    async with app.run_test(size=(100, 30)) as pilot:
        app.preview.styles.scrollbar_size_vertical = 0
        await until(pilot, lambda: READY, "READY")
        ACTIONS
        await until(pilot, lambda: DONE, "DONE")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        print(json.dumps({"svg": app.export_screenshot()}))
asyncio.run(main())
"""


@pytest.fixture
def snapshot_user(session_user: User) -> Iterator[User]:
    """The test user with its workspace at ~/project, shown as such by the TUI."""
    workspace = session_user.home / "project"
    workspace.mkdir()
    session_user.chown(workspace)
    original, session_user.workspace = session_user.workspace, workspace
    yield session_user
    session_user.workspace = original  # its own clean-up runs from there


def screenshot(user: User, ready: str, actions: str = "", done: str = "True") -> str:
    code = SCRIPT.replace("READY", ready, 1).replace("ACTIONS", actions or "pass", 1) \
        .replace("DONE", done, 1)
    result = user.run([COOP[0], "-c", code], timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    svg: str = json.loads(result.stdout.decode().strip().splitlines()[-1])["svg"]
    return svg


def _normal(svg: str) -> str:
    """Textual names the SVG's CSS classes after a hash that is not stable across runs."""
    return re.sub(r"terminal-\d+", "terminal", svg)


def check(name: str, svg: str) -> None:
    svg = _normal(svg)
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("COOP_UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(svg)
        if not os.environ.get("COOP_UPDATE_SNAPSHOTS"):
            pytest.fail(f"{path} did not exist; it was written: review and commit it")
    assert svg == path.read_text(), f"{name} differs from {path} (COOP_UPDATE_SNAPSHOTS=1)"


def start(user: User, name: str, script: str) -> None:
    result = user.coop("-d", "-n", name, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr


class TestDashboard:
    def test_empty_state(self, snapshot_user: User) -> None:
        check("dashboard-empty", screenshot(snapshot_user, "not app.preview.display"))

    def test_sessions_and_preview(self, snapshot_user: User) -> None:
        start(snapshot_user, "agent-one", COLOURS)
        start(snapshot_user, "agent-two", "echo plain output; exec sleep 1000")
        svg = screenshot(snapshot_user, "'truecolor' in str(app.preview.render())"
                                        " and app.table.row_count == 2 and marked(app)")
        check("dashboard-sessions", svg)

    def test_kill_confirmation(self, snapshot_user: User) -> None:
        start(snapshot_user, "doomed", "echo about to be killed; exec sleep 1000")
        svg = screenshot(snapshot_user, "'killed' in str(app.preview.render()) and marked(app)",
                         "await pilot.press('k')",
                         "type(app.screen).__name__ == 'ConfirmKill'")
        check("kill-confirmation", svg)


class TestTerminalView:
    def test_colourful_full_screen_program(self, snapshot_user: User) -> None:
        start(snapshot_user, "colours", COLOURS)
        svg = screenshot(snapshot_user, "'truecolor' in str(app.preview.render())",
                         "await pilot.press('enter')", "shown(app, 'truecolor')")
        check("terminal-colours", svg)
