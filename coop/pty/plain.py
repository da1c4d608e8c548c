"""Terminal output as plain text, for `coop logs`, the TUI's and the page's history."""

from __future__ import annotations

import re

_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=!]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                      rb"|\x1b[P^_][^\x1b]*\x1b\\|\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")


def plain_text(data: bytes) -> bytes:
    """Escape sequences stripped, CRLF as LF, a line overwritten after a bare CR dropped."""
    text = _ESCAPES.sub(b"", data).replace(b"\r\n", b"\n")
    return re.sub(rb"[^\n]*\r(?!\n)", b"", text).replace(b"\x07", b"")
