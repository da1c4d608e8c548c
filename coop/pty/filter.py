"""The input filter for web and tunnel clients on the agent's PTY (SPEC §8).

A convenience against accidents on a phone keyboard, not a security boundary: Ctrl+D
(`\\x04`), Ctrl+\\ (`\\x1c`), a line that is just `exit`, `quit` or `/exit` followed by
Enter, and the Coopfile's extra sequences never reach the agent; Ctrl+C is debounced (the
first goes through, more within the window are dropped — a double Ctrl+C quits Claude
Code), held for confirmation, or passed, per `input_filter.ctrl_c`.

Matching is streaming: a sequence split across any number of messages is still caught.
Bytes that could be the start of a blocked sequence are held, at most `HOLD_SECONDS`,
then released (`release_due`). Nothing else is ever delayed, so a lone ESC reaches the
agent at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOLD_SECONDS = 0.5
WARNING = "⚠ Blocked from web. Use a local terminal to exit."
ALWAYS = (b"\x04", b"\x1c")
LINE_WORDS = (b"exit", b"quit", b"/exit")
ENTER = (b"\r", b"\n")


def parse_sequence(text: str) -> bytes:
    """A Coopfile `block` entry: text with `\\xNN` escapes."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")


@dataclass
class Filtered:
    forward: bytes = b""
    """What goes to the PTY now."""
    blocked: list[str] = field(default_factory=list)
    """What was dropped (for the warning and the UI marker)."""
    confirm: bool = False
    """A Ctrl+C waits for the user's confirmation (`ctrl_c: confirm`)."""


class InputFilter:
    def __init__(self, ctrl_c: str = "debounce", debounce_ms: int = 500,
                 extra: list[bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctrl_c = ctrl_c
        self.debounce = debounce_ms / 1000
        self.sequences = [s for s in (*ALWAYS, *(extra or [])) if s]
        self.lines = [w + e for w in LINE_WORDS for e in ENTER]
        self.clock = clock
        self.held = b""
        self.held_since = 0.0
        self.line_start = True
        self.last_ctrl_c = -1e9
        self.pending_ctrl_c = False

    # -- matching ---------------------------------------------------------------------
    def _candidates(self, at_line_start: bool) -> list[bytes]:
        return self.sequences + (self.lines if at_line_start else [])

    def _is_prefix(self, data: bytes, at_line_start: bool) -> bool:
        return any(seq.startswith(data) and seq != data for seq in
                   self._candidates(at_line_start))

    def _match(self, data: bytes, at_line_start: bool) -> bytes | None:
        for seq in self._candidates(at_line_start):
            if data.startswith(seq):
                return seq
        return None

    def feed(self, data: bytes) -> Filtered:
        """Filter one message from the client."""
        out = Filtered()
        buffer = self.held + data
        if not self.held:
            self.held_since = self.clock()
        self.held = b""
        forward = bytearray()
        i = 0
        line_start = self.line_start
        while i < len(buffer):
            rest = buffer[i:]
            seq = self._match(rest, line_start)
            if seq is not None:
                out.blocked.append(_describe(seq))
                i += len(seq)
                line_start = seq[-1:] in ENTER or line_start
                continue
            if self._is_prefix(rest, line_start):
                self.held = rest  # could become a blocked sequence: wait for more
                break
            byte = buffer[i:i + 1]
            if byte == b"\x03":
                self._ctrl_c(forward, out)
            else:
                forward += byte
            line_start = byte in ENTER
            i += 1
        self.line_start = line_start
        out.forward = bytes(forward)
        return out

    def _ctrl_c(self, forward: bytearray, out: Filtered) -> None:
        now = self.clock()
        if self.ctrl_c == "pass":
            forward += b"\x03"
        elif self.ctrl_c == "confirm":
            self.pending_ctrl_c = True
            out.confirm = True
        elif now - self.last_ctrl_c < self.debounce:
            out.blocked.append("a repeated Ctrl+C")
        else:
            forward += b"\x03"
            self.last_ctrl_c = now

    def confirm_ctrl_c(self) -> bytes:
        """The user confirmed the held Ctrl+C in the UI: it goes now."""
        if not self.pending_ctrl_c:
            return b""
        self.pending_ctrl_c = False
        return b"\x03"

    def release_due(self) -> bytes:
        """Held bytes older than HOLD_SECONDS: they were not a blocked sequence after all."""
        if self.held and self.clock() - self.held_since >= HOLD_SECONDS:
            released, self.held = self.held, b""
            self.line_start = released[-1:] in ENTER
            return released
        return b""


def _describe(seq: bytes) -> str:
    names = {b"\x04": "Ctrl+D", b"\x1c": "Ctrl+\\"}
    if seq in names:
        return names[seq]
    text = seq.rstrip(b"\r\n").decode("latin-1")
    return f"{text}⏎" if seq[-1:] in ENTER else repr(text)
