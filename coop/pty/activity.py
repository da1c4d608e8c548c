"""Is the agent working or waiting for you? Per-PTY activity from cheap signals.

Heuristic (SPEC §6.2): a PTY that produced output after the last input and has then been
quiet for `QUIET_SECONDS`, or that rang the bell, looks like it waits for input. An exact
signal beats any heuristic: `coop-notify` inside the sandbox (e.g. from Claude Code's
Notification and Stop hooks) marks it waiting at once. Any input clears the mark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

QUIET_SECONDS = 3.0


@dataclass
class Activity:
    last_output: float = 0.0
    last_input: float = 0.0
    bell: bool = False
    notified: str | None = None
    """The message of the last `coop-notify`, until the next input."""

    def on_output(self, data: bytes, now: float | None = None) -> None:
        self.last_output = now if now is not None else time.time()
        if b"\x07" in data and not _only_in_osc(data):
            self.bell = True

    def on_input(self, now: float | None = None) -> None:
        self.last_input = now if now is not None else time.time()
        self.bell = False
        self.notified = None

    def on_notify(self, message: str) -> None:
        self.notified = message or "waiting"

    def waiting(self, now: float | None = None) -> bool:
        now = now if now is not None else time.time()
        if self.notified is not None or self.bell:
            return True
        return (self.last_output > self.last_input
                and now - self.last_output >= QUIET_SECONDS)


def _only_in_osc(data: bytes) -> bool:
    """BEL that only terminates OSC sequences (titles) is not a bell."""
    stripped = data
    while b"\x1b]" in stripped:
        start = stripped.index(b"\x1b]")
        end = stripped.find(b"\x07", start)
        if end < 0:
            break
        stripped = stripped[:start] + stripped[end + 1:]
    return b"\x07" not in stripped
