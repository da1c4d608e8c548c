"""The protocol from asyncio code (the TUI): requests, the event stream, attach streams.

The daemon is found (and started if needed) by the blocking client in a thread, so there
is one auto-spawn path; after that everything is asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from coop.ipc.client import RequestError, connect
from coop.ipc.framing import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameParser,
    encode,
    encode_control,
    encode_data,
)
from coop.paths import CoopPaths

_LEN = struct.Struct(">I")
STREAM_READ = 262144
"""How much `stream()` reads at once (the frames of one read wait in its parser)."""


class AsyncConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, paths: CoopPaths) -> AsyncConnection:
        await asyncio.get_running_loop().run_in_executor(None, lambda: connect(paths).close())
        reader, writer = await asyncio.open_unix_connection(
            str(paths.run_dir / "daemon.sock"), limit=MAX_FRAME + 16)
        conn = cls(reader, writer)
        writer.write(encode({"version": PROTOCOL_VERSION}))
        await conn.receive()
        return conn

    async def receive(self) -> dict[str, Any]:
        (length,) = _LEN.unpack(await self.reader.readexactly(4))
        message: dict[str, Any] = json.loads(await self.reader.readexactly(length))
        return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.writer.write(encode(message))
        await self.writer.drain()
        reply = await self.receive()
        if not reply.get("ok"):
            raise RequestError(str(reply.get("error")), str(reply.get("message", "")))
        return reply

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        await self.request({"cmd": "events"})
        while True:
            yield await self.receive()

    async def stream(self) -> AsyncIterator[tuple[int, bytes]]:
        """After attach: (kind, body) frames until the connection ends."""
        parser = FrameParser(stream=True)
        while True:
            data = await self.reader.read(STREAM_READ)
            if not data:
                return
            parser.feed(data)
            for frame in parser.frames():
                yield frame

    def send_data(self, data: bytes) -> None:
        self.writer.write(encode_data(data))

    def send_control(self, message: dict[str, Any]) -> None:
        self.writer.write(encode_control(message))

    def close(self) -> None:
        self.writer.close()

