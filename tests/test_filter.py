"""The input filter: every blocked sequence, split every possible way, is caught."""

from __future__ import annotations

import itertools

import pytest

from coop.pty.filter import HOLD_SECONDS, InputFilter, parse_sequence


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def splits(data: bytes) -> list[list[bytes]]:
    """Every way to cut `data` into consecutive non-empty chunks."""
    out = []
    for cuts in itertools.product([False, True], repeat=len(data) - 1):
        chunks, start = [], 0
        for index, cut in enumerate(cuts, start=1):
            if cut:
                chunks.append(data[start:index])
                start = index
        chunks.append(data[start:])
        out.append(chunks)
    return out


BLOCKED = [b"\x04", b"\x1c", b"exit\r", b"exit\n", b"quit\r", b"quit\n", b"/exit\r",
           b"/exit\n", b"\x1bq"]


@pytest.mark.parametrize("sequence", BLOCKED)
def test_every_split_of_every_blocked_sequence_is_caught(sequence: bytes) -> None:
    for chunks in splits(sequence):
        flt = InputFilter(extra=[b"\x1bq"], clock=Clock())
        forwarded = b""
        blocked: list[str] = []
        for chunk in chunks:
            result = flt.feed(chunk)
            forwarded += result.forward
            blocked += result.blocked
        forwarded += flt.release_due()
        assert forwarded == b"", (chunks, forwarded)
        assert len(blocked) == 1, chunks


def test_held_prefix_is_released_after_the_hold() -> None:
    clock = Clock()
    flt = InputFilter(clock=clock)
    assert flt.feed(b"exi").forward == b""
    assert flt.release_due() == b""
    clock.now += HOLD_SECONDS
    assert flt.release_due() == b"exi"
    assert flt.feed(b"t\r").forward == b"t\r"  # too late to be `exit⏎`


def test_ordinary_typing_passes_untouched() -> None:
    flt = InputFilter(clock=Clock())
    for text in (b"exits\r", b"echo exit\r", b"quitting time\r", b"\x1b", b"\x1b[A", b"q"):
        assert flt.feed(text).forward == text, text


def test_exit_is_blocked_only_as_a_whole_line() -> None:
    flt = InputFilter(clock=Clock())
    assert flt.feed(b"ls\r").forward == b"ls\r"
    result = flt.feed(b"exit\r")
    assert (result.forward, result.blocked) == (b"", ["exit⏎"])
    assert flt.feed(b"say exit\r").forward == b"say exit\r"


def test_ctrl_c_debounce_confirm_and_pass() -> None:
    clock = Clock()
    flt = InputFilter(ctrl_c="debounce", debounce_ms=500, clock=clock)
    assert flt.feed(b"\x03").forward == b"\x03"
    second = flt.feed(b"\x03")
    assert second.forward == b"" and second.blocked == ["a repeated Ctrl+C"]
    clock.now += 0.6
    assert flt.feed(b"\x03").forward == b"\x03"
    confirm = InputFilter(ctrl_c="confirm", clock=clock)
    held = confirm.feed(b"\x03")
    assert held.forward == b"" and held.confirm
    assert confirm.confirm_ctrl_c() == b"\x03" and confirm.confirm_ctrl_c() == b""
    assert InputFilter(ctrl_c="pass", clock=clock).feed(b"\x03\x03").forward == b"\x03\x03"


def test_coopfile_sequences_with_escapes() -> None:
    assert parse_sequence("\\x1bq") == b"\x1bq"
    assert parse_sequence("\\x18\\x18") == b"\x18\x18"
