"""The screen model: snapshots repaint exactly; lazy parsing stays bounded."""

from __future__ import annotations

import pyte
import pytest

from coop.pty.activity import Activity
from coop.pty.ring import OutputRing
from coop.pty.screen import RESTART_BEHIND, ScreenTracker

SCREENS = {
    "shell": b"$ ls\r\nfile-a  file-b\r\n$ ",
    "colours": b"\x1b[1;31mbold red\x1b[0m \x1b[38;5;208m256\x1b[0m \x1b[38;2;1;2;3;48;2;9;8;7mtrue"
               b"\x1b[0m \x1b[4;3;7mfancy\x1b[0m",
    "wide": "中文 and e\u0301 combining\r\n\U0001F600 emoji".encode(),
    "alternate": b"main text\x1b[?1049h\x1b[2J\x1b[5;5Hin alt\x1b[?25l",
    "modes": b"\x1b[?2004h\x1b[?1h\x1b[?1000h\x1b[?1006hmodes on\x1b]2;my title\x07",
}


def replay(snapshot: bytes, rows: int, cols: int) -> pyte.Screen:
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(snapshot)
    return screen


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_snapshot_repaints_the_same_cells(name: str) -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 8)
    ring.append(SCREENS[name])
    original = tracker.screen
    tracker.catch_up()
    again = replay(tracker.snapshot(), 8, 40)
    assert again.display == original.display
    for y in range(8):
        for x in range(40):
            a, b = original.buffer[y][x], again.buffer[y][x]
            assert (a.data, a.fg, a.bg, a.bold, a.italics, a.underscore, a.reverse) == \
                   (b.data, b.fg, b.bg, b.bold, b.italics, b.underscore, b.reverse), (y, x)
    assert (again.cursor.x, again.cursor.y) == (original.cursor.x, original.cursor.y)
    assert again.cursor.hidden == original.cursor.hidden


def test_snapshot_restores_input_modes_and_title() -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 8)
    ring.append(SCREENS["modes"])
    snap = tracker.snapshot()
    for mode in (b"\x1b[?2004h", b"\x1b[?1h", b"\x1b[?1000h", b"\x1b[?1006h"):
        assert mode in snap
    assert b"\x1b]2;my title\x07" in snap


def test_leaving_the_alternate_screen_restores_the_main_one() -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 8)
    ring.append(SCREENS["alternate"] + b"\x1b[?1049l")
    assert tracker.text_lines()[0] == "main text"


def test_far_behind_restarts_at_the_last_repaint() -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 5)
    junk = b"x" * 79 + b"\r\n"
    ring.append(junk * (2 * RESTART_BEHIND // len(junk)))
    ring.append(b"\x1b[2J\x1b[Hfinal frame")
    assert tracker.behind > RESTART_BEHIND
    assert tracker.text_lines()[0] == "final frame"
    assert tracker.behind == 0


def test_shrinking_keeps_the_cursor_line() -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 30)
    ring.append(b"$ ")
    tracker.resize(40, 20)
    assert tracker.text_lines()[0] == "$"
    ring.append(b"\r\n" * 25 + b"bottom")
    tracker.resize(40, 10)
    assert tracker.text_lines()[-1] == "bottom"


def test_ring_keeps_the_newest_bytes_with_absolute_positions() -> None:
    ring = OutputRing(capacity=100)
    for i in range(50):
        ring.append(b"%04d\n" % i)
    assert ring.end == 250
    start, data = ring.read(0)
    assert start == ring.start and len(data) <= 100 and data.endswith(b"0049\n")
    assert ring.tail_lines(2) == b"0048\n0049\n"


def test_bell_and_quiet_output_mean_waiting() -> None:
    activity = Activity()
    activity.on_input(now=100.0)
    activity.on_output(b"thinking...", now=101.0)
    assert not activity.waiting(now=102.0)
    assert activity.waiting(now=105.0)
    activity.on_input(now=106.0)
    assert not activity.waiting(now=120.0)
    activity.on_output(b"\x1b]0;title\x07", now=121.0)
    assert not activity.bell  # BEL ending an OSC is no bell
    activity.on_output(b"done\x07", now=122.0)
    assert activity.waiting(now=122.1)


def test_snapshot_replays_the_cursor_shape() -> None:
    ring = OutputRing()
    tracker = ScreenTracker(ring, 40, 5)
    ring.append(b"text\x1b[6 q more")
    assert tracker.snapshot().endswith(b"\x1b[6 q")
