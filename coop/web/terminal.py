"""One browser terminal: a WebSocket relayed to a supervisor's PTY stream.

Binary frames carry terminal bytes both ways, text frames JSON control. Between them sit
the input filter (SPEC §8; the agent's PTY only) with its held bytes released after at
most `HOLD_SECONDS`, and browser flow control: a page that opens `/ws?flow=1` reports
how many bytes xterm.js has drawn (`{"type": "ack", "bytes": N}`); past `HIGH_WATER`
unacknowledged bytes the relay stops reading from the supervisor, whose bounded queue
for this client then overflows and is replaced by a snapshot (`resync`) — a lagging
phone skips ahead instead of queueing minutes of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from coop.ipc.aclient import AsyncConnection
from coop.ipc.framing import CONTROL
from coop.pty.filter import HOLD_SECONDS, WARNING, InputFilter, parse_sequence

HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024


def filter_for(info: dict[str, Any]) -> InputFilter:
    """The session's own `input_filter` settings from its Coopfile."""
    settings = info.get("input_filter") or {}
    return InputFilter(ctrl_c=str(settings.get("ctrl_c", "debounce")),
                       debounce_ms=int(settings.get("ctrl_c_debounce_ms", 500)),
                       extra=[parse_sequence(s) for s in settings.get("block", [])])


class TerminalRelay:
    def __init__(self, ws: web.WebSocketResponse, conn: AsyncConnection,
                 flt: InputFilter | None, read_only: bool, flow: bool) -> None:
        self.ws = ws
        self.conn = conn
        self.filter = flt
        self.read_only = read_only
        self.flow = flow
        self.sent = 0
        self.acked = 0
        self.window = asyncio.Event()
        self.window.set()
        self.release: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        pump = asyncio.get_running_loop().create_task(self._to_browser())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.BINARY:
                    await self._input(message.data)
                elif message.type == WSMsgType.TEXT:
                    await self._control(message.data)
        finally:
            pump.cancel()
            if self.release is not None:
                self.release.cancel()
            self.conn.close()

    # -- browser → PTY ----------------------------------------------------------------
    async def _input(self, data: bytes) -> None:
        if self.read_only:
            return
        if self.filter is not None:
            result = self.filter.feed(data)
            if result.blocked:
                await self._tell({"type": "blocked", "what": result.blocked,
                                  "message": WARNING})
            if result.confirm:
                await self._tell({"type": "confirm_ctrl_c"})
            data = result.forward
            self._schedule_release()
        if data:
            self.conn.send_data(data)

    def _schedule_release(self) -> None:
        """Bytes held as a possible `exit⏎` go on their own once they are old enough."""
        if self.release is not None:
            self.release.cancel()
            self.release = None
        if self.filter is not None and self.filter.held:
            self.release = asyncio.get_running_loop().call_later(HOLD_SECONDS + 0.01,
                                                                 self._release_due)

    def _release_due(self) -> None:
        self.release = None
        if self.filter is None:
            return
        data = self.filter.release_due()
        if data:
            self.conn.send_data(data)
        self._schedule_release()

    async def _control(self, text: str) -> None:
        try:
            control = json.loads(text)
            kind = control.get("type")
        except (ValueError, AttributeError):
            await self._tell({"type": "error", "error": "INVALID_COMMAND",
                              "message": "control frames are JSON objects"})
            return
        if kind == "ack":
            self._ack(control.get("bytes"))
        elif self.read_only:
            return
        elif kind == "confirm_ctrl_c" and self.filter is not None:
            self.conn.send_data(self.filter.confirm_ctrl_c())
        elif kind in ("resize", "follow", "detach"):
            self.conn.send_control(control)
        else:
            await self._tell({"type": "error", "error": "INVALID_COMMAND",
                              "message": f"unknown control {kind!r}"})

    def _ack(self, count: object) -> None:
        if isinstance(count, int) and self.acked < count <= self.sent:
            self.acked = count
            if self.sent - self.acked <= LOW_WATER:
                self.window.set()

    async def _tell(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(json.dumps(message))

    # -- PTY → browser ----------------------------------------------------------------
    async def _to_browser(self) -> None:
        reply = await self.conn.receive()  # the attach reply
        if not reply.get("ok"):
            await self._tell({"type": "error", **reply})
            await self.ws.close()
            return
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            async for kind, body in self.conn.stream():
                if kind == CONTROL:
                    await self.ws.send_str(body.decode())
                    continue
                await self.ws.send_bytes(body)
                self.sent += len(body)
                if self.flow and self.sent - self.acked > HIGH_WATER:
                    # Reading stops here; the supervisor's bounded queue does the rest.
                    self.window.clear()
                    await self.window.wait()
        await self.ws.close()
