"""Frames on the wire (SPEC §7; every message is documented in docs/protocol.md).

Request mode: `[len u32 BE][UTF-8 JSON object]`, at most `MAX_FRAME` bytes of JSON.
Stream mode (after `attach`/`shell` succeeded): `[len u32 BE][type u8][payload]`, where
`len` counts the type byte and the payload; type 0 carries terminal bytes, type 1 a JSON
control object. One incremental `FrameParser` serves both, for blocking and non-blocking
readers; it never trusts a length it has not checked.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20
DATA = 0
CONTROL = 1
_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the protocol; `code` is the error code to reply with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError("MESSAGE_TOO_LARGE", f"a {len(body)}-byte message is too large")
    return _LEN.pack(len(body)) + body


def encode_data(payload: bytes) -> bytes:
    return _LEN.pack(len(payload) + 1) + b"\x00" + payload


def encode_control(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LEN.pack(len(body) + 1) + b"\x01" + body


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message}


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("INVALID_COMMAND", "a frame is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("INVALID_COMMAND", "a frame must hold a JSON object")
    return message


class FrameParser:
    """Splits a byte stream into frames; `stream` switches to typed stream frames."""

    def __init__(self, stream: bool = False, limit: int = MAX_FRAME) -> None:
        self.stream = stream
        self.limit = limit
        self._buf = bytearray()
        self._offset = 0  # bytes at the front already handed out as frames

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._offset

    def take_rest(self) -> bytes:
        """What is buffered beyond the frames handed out (for switching framing)."""
        rest = bytes(self._buf[self._offset:])
        self._buf.clear()
        self._offset = 0
        return rest

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Complete frames so far: (type, body); request mode yields type CONTROL.

        Consumed bytes are removed once per call, not once per frame: removing from the
        front of a bytearray moves everything behind it."""
        buf = self._buf
        try:
            while len(buf) - self._offset >= 4:
                offset = self._offset
                (length,) = _LEN.unpack_from(buf, offset)
                if length > self.limit + (1 if self.stream else 0):
                    raise ProtocolError("MESSAGE_TOO_LARGE",
                                        f"a frame of {length} bytes exceeds {self.limit}")
                if self.stream and length == 0:
                    raise ProtocolError("INVALID_COMMAND", "an empty stream frame")
                end = offset + 4 + length
                if len(buf) < end:
                    return
                if self.stream:
                    kind = buf[offset + 4]
                    if kind not in (DATA, CONTROL):
                        raise ProtocolError("INVALID_COMMAND",
                                            f"unknown stream frame type {kind}")
                    body = bytes(buf[offset + 5:end])
                else:
                    kind, body = CONTROL, bytes(buf[offset + 4:end])
                self._offset = end
                yield kind, body
        finally:
            del buf[:self._offset]
            self._offset = 0


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the connection closed")
        chunks += chunk
    return bytes(chunks)


def recv_message(sock: socket.socket) -> dict[str, Any]:
    """One request-mode frame from a blocking socket."""
    (length,) = _LEN.unpack(recv_exact(sock, 4))
    if length > MAX_FRAME:
        raise ProtocolError("MESSAGE_TOO_LARGE", f"a frame of {length} bytes")
    return decode_json(recv_exact(sock, length))


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode(message))
