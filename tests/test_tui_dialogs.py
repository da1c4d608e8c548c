"""Every dialog of the TUI on a small terminal (80×24, the classic default) and a roomy one:
each sentence on screen whole, wrapped at word boundaries, nothing cut off by the edge of
the dialog or of the terminal; a QR code is shown entirely or not at all.

The dialogs are pushed on a bare Textual app, so no daemon is involved: what is checked
is the text of the screen cells each widget occupies, as a user reads them.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget

from coop.commands.serve import qr_text
from coop.tui.app import ConfirmKill, NewSession, WebLink

SIZES = [(80, 24), (120, 40)]
EDGES = "▔▁▊▎"
LAN_URL = "http://192.168.100.200:8888/?token=" + "T0k3n-0f-32-characters_xxxxxxxxx"
TLS_URL = ("https://192.168.100.200:8888/?token=" + "T0k3n-0f-32-characters_xxxxxxxxx"
           + "#sha256=" + ":".join(["AB"] * 32))


def screen_lines(app: App[None]) -> list[str]:
    """The terminal's cells as text, one string per row (what export_screenshot draws)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text().split("\n")[:height]


@dataclass
class Shown:
    """A dialog as it was on screen: the text of every row, where each widget was, and
    which widget lay inside which."""

    lines: list[str]
    size: tuple[int, int]
    regions: dict[str, Region]
    nesting: list[tuple[str, Region, Region]]

    def cells(self, key: str) -> list[str]:
        """The rows of screen text inside a widget's region."""
        region = self.regions[key]
        return [line[region.x:region.right].ljust(region.width)
                for line in self.lines[region.y:region.bottom]]

    def reads(self, key: str) -> str:
        """A widget's text as a reader takes it in: rows joined, whitespace folded, the
        edges Textual draws around buttons and inputs left out."""
        text = " ".join(self.cells(key)).translate({ord(c): " " for c in EDGES})
        return " ".join(text.split())

    def assert_whole(self) -> None:
        """Every widget lies on the screen and inside each container around it."""
        width, height = self.size
        for key, region in self.regions.items():
            assert region.x >= 0 and region.y >= 0, (key, region)
            assert region.right <= width and region.bottom <= height, (key, region, self.size)
        for key, inner, outer in self.nesting:
            assert outer.contains_region(inner), (key, inner, outer)


def show(make: Callable[[], Screen[Any]], size: tuple[int, int]) -> Shown:
    """Push the dialog on a bare app of that size, let it lay out, and look."""

    async def run() -> Shown:
        app: App[None] = App()
        async with app.run_test(size=size) as pilot:
            dialog = make()
            app.push_screen(dialog)
            for _ in range(100):
                await pilot.pause()
                if app.screen is dialog and dialog.query("*") and \
                        all(w.region.area for w in dialog.query("Label, Button, Static")):
                    break
            await pilot.pause()
            widgets = list(dialog.query("*"))
            keys = {id(w): f"#{w.id}" if w.id else f"{type(w).__name__}-{i}"
                    for i, w in enumerate(widgets)}
            nesting = []
            for widget in widgets:
                parent = widget.parent
                while isinstance(parent, Widget) and parent is not dialog:
                    nesting.append((keys[id(widget)], widget.region, parent.region))
                    parent = parent.parent
            return Shown(screen_lines(app), size, {keys[id(w)]: w.region for w in widgets},
                         nesting)

    return asyncio.run(run())


@pytest.mark.parametrize("size", SIZES)
def test_the_kill_question_is_whole_and_wraps_at_words(size: tuple[int, int]) -> None:
    shown = show(lambda: ConfirmKill("doomed-session-with-a-long-name"), size)
    shown.assert_whole()
    assert shown.reads("#question") == (
        "Kill session doomed-session-with-a-long-name? Its sandbox stops and its upper dir "
        "is discarded (the workspace and volumes stay).")
    assert shown.reads("#yes") == "Kill (y)"
    assert shown.reads("#no") == "Cancel (n)"


@pytest.mark.parametrize("size", SIZES)
def test_the_new_session_dialog_is_whole(size: tuple[int, int]) -> None:
    shown = show(NewSession, size)
    shown.assert_whole()
    [label] = [key for key in shown.regions if key.startswith("Label")]
    assert shown.reads(label) == "Start a session in which directory? (its Coopfile applies)"


def whole_qr_code(shown: Shown, url: str) -> bool:
    """The QR code of `url`, every row of it, where the #qr widget is."""
    rows = qr_text(url).rstrip("\n").split("\n")
    cells = shown.cells("#qr")
    return len(cells) == len(rows) and all(
        line[:len(row)] == row for line, row in zip(cells, rows, strict=True))


@pytest.mark.parametrize("size", SIZES)
def test_the_web_dialog_shows_its_text_url_and_whole_qr_code(size: tuple[int, int]) -> None:
    reply = {"url": "http://127.0.0.1:8888/?token=x", "network_urls": [LAN_URL]}
    shown = show(lambda: WebLink(reply), size)
    shown.assert_whole()
    assert shown.reads("#hint") == (
        "Scan to open your sessions on a phone on this network. Anyone with the link can "
        "type into them.")
    assert "".join(shown.reads("#url").split()) == LAN_URL  # folded, not cut
    assert whole_qr_code(shown, LAN_URL)
    assert shown.reads("#close") == "Close (esc)"
    assert shown.reads("#stop") == "Stop serving (x)"


def test_the_web_dialog_on_loopback_shows_no_qr_code_but_how_to_reach_a_phone() -> None:
    reply = {"url": "http://127.0.0.1:8888/?token=x", "network_urls": [], "host": "127.0.0.1"}
    shown = show(lambda: WebLink(reply), (80, 24))
    shown.assert_whole()
    assert "#qr" not in shown.regions  # no code of an address a phone cannot reach
    assert shown.reads("#hint").startswith("Only this machine can reach it. To open it on "
                                           "your phone: coop serve --stop")
    assert "".join(shown.reads("#url").split()) == "http://127.0.0.1:8888/?token=x"


def test_a_qr_code_too_big_for_the_terminal_says_so_instead_of_being_cut() -> None:
    reply = {"url": TLS_URL, "network_urls": [TLS_URL]}
    small = show(lambda: WebLink(reply), (80, 24))
    small.assert_whole()
    assert "█" not in "".join(small.cells("#qr"))  # no partial code to misread
    assert "Make the terminal at least" in small.reads("#qr")
    assert "".join(small.reads("#url").split()) == TLS_URL
    big = show(lambda: WebLink(reply), (120, 40))
    big.assert_whole()
    assert whole_qr_code(big, TLS_URL)
