"""A terminal widget: one PTY of a session, drawn from a pyte screen with the Line API.

Output is parsed by pyte on a worker thread, never on the UI's event loop, in slices of
at most `PARSE_SLICE` bytes; redraws are coalesced to at most ~60 a second; only the rows
pyte marks dirty (plus the old and new cursor rows) are refreshed, and each row's Strip
is cached by its content. A lock keeps a row from being drawn mid-parse. Keys go to the
PTY as a terminal would send them, except the key that leaves the view (shown in the
footer), which never reaches the agent.
"""

from __future__ import annotations

import asyncio
import re
import threading
from functools import lru_cache
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from coop.ipc.aclient import AsyncConnection
from coop.ipc.framing import CONTROL
from coop.pty.screen import CoopScreen
from coop.tui.keys import key_bytes

FRAME = 1 / 60
# DECSCUSR: CSI Ps SP q — 0-2 block, 3-4 underline, 5-6 bar (drawn as an underline here:
# a cell cannot hold a bar).
_CURSOR_SHAPE = re.compile(rb"\x1b\[([0-6])? q")
SHAPES = {0: "block", 1: "block", 2: "block", 3: "underline", 4: "underline", 5: "bar",
          6: "bar"}
PARSE_SLICE = 64 * 1024
_NAMED = {"black": "black", "red": "red", "green": "green", "brown": "yellow",
          "yellow": "yellow", "blue": "blue", "magenta": "magenta", "cyan": "cyan",
          "white": "white"}


def _colour(value: str) -> str | None:
    if value == "default":
        return None
    if value in _NAMED:
        return _NAMED[value]
    if value.startswith("bright"):
        return "bright_" + _NAMED.get(value.removeprefix("bright").lstrip("_"), "white")
    if len(value) == 6:
        return f"#{value}"
    return None


@lru_cache(maxsize=4096)
def cell_style(fg: str, bg: str, bold: bool, italics: bool, underscore: bool,
               reverse: bool, strikethrough: bool) -> Style:
    return Style(color=_colour(fg), bgcolor=_colour(bg), bold=bold, italic=italics,
                 underline=underscore, reverse=reverse, strike=strikethrough)


class Terminal(Widget, can_focus=True):
    """The view of one PTY. Ctrl+] leaves it (the key never reaches the PTY)."""

    DEFAULT_CSS = """
    Terminal { height: 1fr; width: 1fr; background: black; }
    """
    BINDINGS = [Binding("ctrl+right_square_bracket", "leave", "Leave terminal", priority=True)]

    class Left(Message):
        """The user left the terminal view."""

    class Ended(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, conn: AsyncConnection, rows: int = 24, cols: int = 80,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn = conn
        self.screen_model = CoopScreen(cols, rows)
        from pyte import ByteStream

        self.stream = ByteStream(self.screen_model)
        self._pending = bytearray()
        self._wakeup = asyncio.Event()
        self._lock = threading.Lock()
        self._parser: asyncio.Task[None] | None = None
        self.cursor_shape = "block"
        self.frames = 0
        """Redraw batches so far (the benchmark reads it)."""
        self._cache: dict[int, tuple[tuple[Any, ...], Strip]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._last_cursor = 0

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._parser = loop.create_task(self._parse_loop())

    async def _read(self) -> None:
        reason = "the session ended"
        async for kind, body in self.conn.stream():
            if kind == CONTROL:
                import json

                control = json.loads(body)
                if control.get("type") == "detached":
                    reason = str(control.get("reason", reason))
                    break
                continue
            self._pending += body
            if b" q" in body:
                for match in _CURSOR_SHAPE.finditer(body):
                    self.cursor_shape = SHAPES[int(match.group(1) or 0)]
            self._wakeup.set()
        while self._pending:
            await asyncio.sleep(FRAME)
        self.post_message(self.Ended(reason))

    async def _parse_loop(self) -> None:
        """At most one redraw per frame: parse what arrived (off the loop), then refresh.
        A quiet terminal redraws at once (an echo shows without waiting for a frame); only
        a busy one is held to the frame rate."""
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self._wakeup.wait()
            wait = last + FRAME - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wakeup.clear()
            while self._pending:
                chunk = bytes(self._pending[:PARSE_SLICE])
                del self._pending[:PARSE_SLICE]
                await asyncio.to_thread(self._feed, chunk)
            self._apply()
            last = loop.time()

    def _feed(self, data: bytes) -> None:
        with self._lock:
            self.stream.feed(data)

    def _apply(self) -> None:
        """Refresh the rows the parsed output changed."""
        with self._lock:
            screen = self.screen_model
            dirty = set(screen.dirty) | {self._last_cursor, screen.cursor.y}
            screen.dirty.clear()
            self._last_cursor = screen.cursor.y
        self.frames += 1
        for y in dirty:
            self._cache.pop(y, None)
            self.refresh_line(y)

    def refresh_line(self, y: int) -> None:
        self.refresh(Region(0, y, self.size.width, 1))

    def render_line(self, y: int) -> Strip:
        with self._lock:
            return self._render_line(y)

    def _render_line(self, y: int) -> Strip:
        screen = self.screen_model
        if y >= screen.lines:
            return Strip.blank(self.size.width)
        cursor_here = y == screen.cursor.y and not screen.cursor.hidden and self.has_focus
        line = screen.buffer[y]
        key = tuple(line[x] for x in range(screen.columns))
        cached = self._cache.get(y)
        if cached is not None and cached[0] == key and not cursor_here:
            return cached[1]
        segments = []
        run_text, run_style = "", None
        for x in range(screen.columns):
            char = line[x]
            if char.data == "":
                continue  # the right half of a wide character
            at_cursor = cursor_here and x == screen.cursor.x
            block = at_cursor and self.cursor_shape == "block"
            style = cell_style(char.fg, char.bg, char.bold, char.italics,
                               char.underscore or (at_cursor and not block),
                               char.reverse ^ block, char.strikethrough)
            if style is not run_style and run_text:
                segments.append(Segment(run_text, run_style))
                run_text = ""
            run_style = style
            run_text += char.data or " "
        if run_text:
            segments.append(Segment(run_text, run_style))
        strip = Strip(segments).adjust_cell_length(self.size.width)
        if not cursor_here:
            self._cache[y] = (key, strip)
        return strip

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.screen_model.lines

    def on_resize(self, event: events.Resize) -> None:
        rows, cols = max(1, event.size.height), max(1, event.size.width)
        if (rows, cols) != (self.screen_model.lines, self.screen_model.columns):
            with self._lock:
                self.screen_model.resize(rows, cols)
            self._cache.clear()
            self.conn.send_control({"type": "resize", "rows": rows, "cols": cols})

    async def on_key(self, event: events.Key) -> None:
        app_cursor = (1 << 5) in self.screen_model.mode
        data = key_bytes(event.key, event.character, app_cursor)
        if data is not None:
            event.stop()
            event.prevent_default()
            self.conn.send_data(data)

    def _mouse(self, event: events.MouseEvent, button: int, release: bool = False) -> None:
        """Mouse reports in SGR form, when the program asked for them (1000/1002/1003)."""
        modes = self.screen_model.mode
        if not any((m << 5) in modes for m in (1000, 1002, 1003)):
            return
        event.stop()
        final = "m" if release else "M"
        self.conn.send_data(f"\x1b[<{button};{event.x + 1};{event.y + 1}{final}".encode())

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._mouse(event, event.button - 1 if event.button else 0)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._mouse(event, event.button - 1 if event.button else 0, release=True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._mouse(event, 64)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._mouse(event, 65)

    def on_paste(self, event: events.Paste) -> None:
        text = event.text.replace("\n", "\r").encode()
        if (2004 << 5) in self.screen_model.mode:
            text = b"\x1b[200~" + text + b"\x1b[201~"
        self.conn.send_data(text)

    def action_leave(self) -> None:
        self.conn.send_control({"type": "detach"})
        self.post_message(self.Left())

    def text(self) -> list[str]:
        """The screen as text (tests, accessibility)."""
        with self._lock:
            return [line.rstrip() for line in self.screen_model.display]

    def on_unmount(self) -> None:
        for task in (self._reader, self._parser):
            if task is not None:
                task.cancel()
        self.conn.close()
