"""Textual key events as the bytes a terminal would send (xterm conventions)."""

from __future__ import annotations

SPECIAL = {
    "enter": b"\r", "tab": b"\t", "backspace": b"\x7f", "escape": b"\x1b",
    "shift+tab": b"\x1b[Z", "delete": b"\x1b[3~", "insert": b"\x1b[2~",
    "home": b"\x1b[H", "end": b"\x1b[F", "pageup": b"\x1b[5~", "pagedown": b"\x1b[6~",
    "f1": b"\x1bOP", "f2": b"\x1bOQ", "f3": b"\x1bOR", "f4": b"\x1bOS", "f5": b"\x1b[15~",
    "f6": b"\x1b[17~", "f7": b"\x1b[18~", "f8": b"\x1b[19~", "f9": b"\x1b[20~",
    "f10": b"\x1b[21~", "f11": b"\x1b[23~", "f12": b"\x1b[24~",
}
ARROWS = {"up": b"A", "down": b"B", "right": b"C", "left": b"D"}


def key_bytes(key: str, character: str | None, app_cursor: bool = False) -> bytes | None:
    """The bytes for a key, or None when it has no terminal meaning."""
    if key in ARROWS:
        return (b"\x1bO" if app_cursor else b"\x1b[") + ARROWS[key]
    if key in SPECIAL:
        return SPECIAL[key]
    if key.startswith("ctrl+") and len(key) == 6:
        letter = key[-1]
        if letter.isalpha():
            return bytes([ord(letter.upper()) & 0x1F])
    if key.startswith("alt+") and character:
        return b"\x1b" + character[-1].encode()
    if character and (character.isprintable() or character in "\r\t"):
        return character.encode()
    if character:
        return character.encode()
    return None
