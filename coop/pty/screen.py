"""A PTY's screen as pyte sees it, and the snapshot that repaints it on a new client.

pyte is slow (0.2-0.8 MB/s here), so it is fed lazily from the output ring: `catch_up`
parses at most a budget of bytes per call (the supervisor calls it when output pauses),
and `snapshot` catches up fully first. When the parser is further behind than
`RESTART_BEHIND`, it does not grind through everything: it restarts from the last full
repaint (clear screen, alternate-screen switch, reset) in the unparsed bytes, which is what
a redrawing agent sends every frame anyway.

The snapshot is an ANSI byte string that reproduces, on a fresh terminal: the alternate
screen when active, every cell with its colours and attributes (runs of equal attributes
share one SGR), wide characters, the cursor position and visibility, and the modes that
change how input is encoded (application cursor keys, bracketed paste, mouse reporting).
"""

from __future__ import annotations

import re
from typing import Any

import pyte
from pyte import modes as pyte_modes

from coop.pty.ring import OutputRing

RESTART_BEHIND = 128 * 1024
# Private modes worth restoring on a new client, pyte-shifted (mode << 5).
ALT_SCREEN_MODES = (1049, 1047, 47)
INPUT_MODES = (1, 1000, 1002, 1003, 1005, 1006, 2004)
_REPAINT = re.compile(rb"\x1b\[2J|\x1b\[\?(?:1049|1047|47)[hl]|\x1bc")
_HOME = re.compile(rb"\x1b\[(?:1;1)?H")
_NAMED_COLOURS = {
    "black": 0, "red": 1, "green": 2, "brown": 3, "yellow": 3, "blue": 4, "magenta": 5,
    "cyan": 6, "white": 7,
}
_BRIGHT = {f"bright{name}": code + 8 for name, code in _NAMED_COLOURS.items()}
_BRIGHT.update({f"bright_{name}": code + 8 for name, code in _NAMED_COLOURS.items()})


class CoopScreen(pyte.Screen):
    """pyte.Screen plus an alternate screen buffer and a window title; no DECCOLM."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self._saved_main: tuple[dict[int, Any], Any] | None = None
        self.alternate = False

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            if 3 in modes:  # DECCOLM would resize to 132 columns; terminals ignore it too
                modes = tuple(m for m in modes if m != 3)
            if any(m in ALT_SCREEN_MODES for m in modes) and not self.alternate:
                self._saved_main = ({y: dict(line) for y, line in self.buffer.items()},
                                    self.cursor)
                self.alternate = True
                self.buffer.clear()
                self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            if 3 in modes:
                modes = tuple(m for m in modes if m != 3)
            if any(m in ALT_SCREEN_MODES for m in modes) and self.alternate:
                self.alternate = False
                self.buffer.clear()
                if self._saved_main is not None:
                    saved, cursor = self._saved_main
                    for y, line in saved.items():
                        self.buffer[y].update(line)
                    self.cursor = cursor
                self._saved_main = None
                self.dirty.update(range(self.lines))
        super().reset_mode(*modes, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.alternate = False
        self._saved_main = None

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Like a terminal, not like pyte: shrinking keeps the cursor's line on screen,
        dropping lines from the top only as far as needed (pyte drops them all from the
        top and leaves the cursor where it was, so a shell prompt would vanish)."""
        lines = lines or self.lines
        columns = columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        if lines < self.lines:
            shift = max(0, self.cursor.y - (lines - 1))
            kept = {y - shift: line for y, line in self.buffer.items()
                    if shift <= y < shift + lines}
            self.buffer.clear()
            self.buffer.update(kept)
            self.cursor.y -= shift
        if columns < self.columns:
            for line in self.buffer.values():
                for x in range(columns, self.columns):
                    line.pop(x, None)
        self.dirty.update(range(lines))
        self.lines, self.columns = lines, columns
        self.set_margins()
        self.cursor.x = min(self.cursor.x, columns - 1)


def _colour_sgr(colour: str, foreground: bool) -> str:
    if colour == "default":
        return "39" if foreground else "49"
    base = 30 if foreground else 40
    if colour in _NAMED_COLOURS:
        return str(base + _NAMED_COLOURS[colour])
    if colour in _BRIGHT:
        return str((90 if foreground else 100) + _BRIGHT[colour] - 8)
    if len(colour) == 6:
        try:
            r, g, b = int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)
        except ValueError:
            return "39" if foreground else "49"
        return f"{38 if foreground else 48};2;{r};{g};{b}"
    return "39" if foreground else "49"


_ATTRIBUTES = (("bold", "1"), ("italics", "3"), ("underscore", "4"), ("blink", "5"),
               ("reverse", "7"), ("strikethrough", "9"))


def _sgr(char: Any) -> str:
    parts = ["0"] + [code for name, code in _ATTRIBUTES if getattr(char, name)]
    if char.fg != "default":
        parts.append(_colour_sgr(char.fg, True))
    if char.bg != "default":
        parts.append(_colour_sgr(char.bg, False))
    return "\x1b[" + ";".join(parts) + "m"


class ScreenTracker:
    """A pyte screen that follows an `OutputRing`, lazily."""

    def __init__(self, ring: OutputRing, columns: int = 80, lines: int = 24) -> None:
        self.ring = ring
        self.screen = CoopScreen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.parsed = ring.end
        self.title = ""
        self.cursor_style = b""
        """The last DECSCUSR (cursor shape) the program sent, replayed in snapshots."""

    @property
    def behind(self) -> int:
        return self.ring.end - self.parsed

    def resize(self, columns: int, lines: int) -> None:
        self.catch_up()
        self.screen.resize(lines, columns)

    def _restart_point(self) -> int:
        """Where to resume when too far behind: the last full repaint, else the newest
        retained bytes (always within the ring)."""
        since, data = self.ring.read(self.parsed)
        last = None
        for match in _REPAINT.finditer(data):
            last = match
        if last is not None:
            return since + last.start()
        # No full repaint: a redrawing program that homes the cursor every frame is the
        # next best place; else only the newest bytes.
        recent = max(0, len(data) - RESTART_BEHIND)
        homes = list(_HOME.finditer(data, recent))
        if homes:
            return since + homes[-1].start()
        return max(since, self.ring.end - RESTART_BEHIND)

    def catch_up(self, budget: int | None = None) -> bool:
        """Parse pending output, at most `budget` bytes; True when fully caught up."""
        if self.parsed < self.ring.start or self.behind > RESTART_BEHIND:
            resume = self._restart_point()
            if resume > self.parsed:
                self.screen.reset()
                self.stream = pyte.ByteStream(self.screen)
                self.parsed = resume
        since, data = self.ring.read(self.parsed, budget)
        if data:
            self.stream.feed(data)
            self.parsed = since + len(data)
            self._track_title(data)
        return self.parsed >= self.ring.end

    def _track_title(self, data: bytes) -> None:
        if b" q" in data:
            shapes = re.findall(rb"\x1b\[[0-6]? q", data)
            if shapes:
                self.cursor_style = shapes[-1]
        if b"\x1b]" in data:
            for match in re.finditer(rb"\x1b\][02];([^\x07\x1b]*)(?:\x07|\x1b\\)", data):
                self.title = match.group(1).decode("utf-8", "replace")
        if self.screen.title:
            self.title = self.screen.title

    def mode_on(self, private_mode: int) -> bool:
        return (private_mode << 5) in self.screen.mode

    def text_lines(self) -> list[str]:
        """The screen as plain text, one string per row (previews, tests)."""
        self.catch_up()
        screen = self.screen
        rows = []
        for y in range(screen.lines):
            line = screen.buffer[y]
            rows.append("".join(line[x].data for x in range(screen.columns)).rstrip())
        return rows

    def cells(self) -> list[list[dict[str, Any]]]:
        """Every cell with its attributes (for previews that render colours)."""
        self.catch_up()
        screen = self.screen
        out = []
        for y in range(screen.lines):
            line = screen.buffer[y]
            out.append([{"ch": c.data, "fg": c.fg, "bg": c.bg, "bold": c.bold,
                         "italic": c.italics, "underline": c.underscore, "reverse": c.reverse}
                        for c in (line[x] for x in range(screen.columns))])
        return out

    def snapshot(self) -> bytes:
        """ANSI bytes that repaint this screen exactly on a fresh terminal."""
        self.catch_up()
        screen = self.screen
        out: list[str] = ["\x1b[0m\x1b[?25l"]
        out.append("\x1b[?1049h" if screen.alternate else "\x1b[?1049l")
        out.append("\x1b[H\x1b[2J")
        blank = screen.default_char
        for y in range(screen.lines):
            line = screen.buffer[y]
            if all(line[x] == blank for x in range(screen.columns)):
                continue  # the screen was just cleared
            out.append(f"\x1b[{y + 1};1H")
            current = ""
            x = 0
            row: list[str] = []
            while x < screen.columns:
                char = line[x]
                if char.data == "":  # the right half of a wide character
                    x += 1
                    continue
                style = _sgr(char)
                if style != current:
                    row.append(style)
                    current = style
                row.append(char.data or " ")
                x += 1
            text = "".join(row)
            # Trailing default blanks need not be sent: the screen was just cleared.
            out.append(text.rstrip(" ") if current == "\x1b[0m" else text)
        out.append("\x1b[0m")
        cursor = screen.cursor
        out.append(_sgr(cursor.attrs) if cursor.attrs != screen.default_char else "")
        out.append(f"\x1b[{cursor.y + 1};{cursor.x + 1}H")
        for mode in INPUT_MODES:
            out.append(f"\x1b[?{mode}{'h' if self.mode_on(mode) else 'l'}")
        if pyte_modes.DECTCEM in screen.mode and not cursor.hidden:
            out.append("\x1b[?25h")
        if self.title:
            out.append(f"\x1b]2;{self.title}\x07")
        return "".join(out).encode("utf-8", "replace") + self.cursor_style
