"""The web server inside the daemon: REST, the event stream, terminals over WebSockets.

One process: `coop serve` asks the daemon to start it (aiohttp's AppRunner and TCPSite on
the daemon's own loop). A terminal WebSocket is relayed to the session's supervisor over a
socketpair the daemon hands it (like a local attach), with the input filter of SPEC §8 in
between for the agent's PTY. Binary WebSocket frames carry terminal bytes, text frames
JSON control (`resize`, `detach`; from the server `blocked`, `pty_exited`, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from coop.ipc.framing import CONTROL, FrameParser, encode_control, encode_data
from coop.pty.filter import WARNING, InputFilter, parse_sequence
from coop.web.auth import COOKIE, Auth

if TYPE_CHECKING:
    from coop.daemon.server import Daemon

ACCESS = "coop_access"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>coop</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>coop</h1><p>The browser UI is not built into this version yet; the API is
<code>/api/sessions</code>, <code>/api/events</code> and <code>/ws?session=&amp;pty=</code>.</p>
</body></html>"""


def _filter_for(info: dict[str, Any]) -> InputFilter:
    """The session's own `input_filter` settings from its Coopfile."""
    settings = info.get("input_filter") or {}
    return InputFilter(ctrl_c=str(settings.get("ctrl_c", "debounce")),
                       debounce_ms=int(settings.get("ctrl_c_debounce_ms", 500)),
                       extra=[parse_sequence(s) for s in settings.get("block", [])])


class WebServer:
    def __init__(self, daemon: Daemon, host: str, port: int, token: str | None = None,
                 read_only: bool = False) -> None:
        self.daemon = daemon
        self.host = host
        self.port = port
        self.auth = Auth(token or secrets.token_urlsafe(24),
                         secrets.token_urlsafe(24) if read_only else None)
        self.runner: web.AppRunner | None = None
        self.clients: dict[str, int] = {}

    async def start(self) -> None:
        app = web.Application(middlewares=[self.guard], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/", self.index),
            web.get("/api/sessions", self.list_sessions),
            web.post("/api/sessions", self.create_session),
            web.delete("/api/sessions/{name}", self.kill_session),
            web.post("/api/sessions/{name}/shell", self.new_shell),
            web.get("/api/events", self.events),
            web.get("/ws", self.terminal),
        ])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def urls(self) -> dict[str, Any]:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        out: dict[str, Any] = {"url": f"http://{shown}:{self.port}/?token={self.auth.token}"}
        if self.auth.read_only_token:
            out["read_only_url"] = (f"http://{shown}:{self.port}/?token="
                                    f"{self.auth.read_only_token}")
        return out

    # -- the gate ---------------------------------------------------------------------
    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        address = request.remote or "?"
        if not self.auth.host_allowed(request.host):
            raise web.HTTPForbidden()
        query_token = request.query.get("token")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        presented = query_token or bearer or request.cookies.get(COOKIE)
        access = self.auth.access(presented)
        if access is None:
            # Only failures are throttled: a good client behind the same address (every
            # client on loopback) is never slowed by someone guessing.
            if self.auth.throttled(address):
                raise web.HTTPTooManyRequests()
            self.auth.failed(address)
            raise web.HTTPForbidden()
        if request.headers.get("Upgrade", "").lower() == "websocket" and \
                not self.auth.origin_allowed(request.headers.get("Origin"), request.host):
            raise web.HTTPForbidden()
        if query_token and request.method == "GET" and "Upgrade" not in request.headers:
            # Keep the token out of the address bar and history: a cookie from now on.
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.rel_url.with_query(query)
            response = web.HTTPFound(str(target))
            response.set_cookie(COOKIE, presented or "", httponly=True, samesite="Strict",
                                path="/")
            raise response
        request[ACCESS] = access
        return await handler(request)  # type: ignore[no-any-return]

    def _full(self, request: web.Request) -> None:
        if request.get(ACCESS) != "full":
            raise web.HTTPForbidden()

    # -- REST -------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def list_sessions(self, request: web.Request) -> web.Response:
        reply = await self.daemon.cmd_ls(None, {})  # type: ignore[arg-type]
        return web.json_response(reply["sessions"])

    async def create_session(self, request: web.Request) -> web.Response:
        self._full(request)
        body = await request.json()
        from pathlib import Path

        from coop.commands.session import create_request
        from coop.config.coopfile import load_config
        from coop.errors import CoopError

        def build() -> dict[str, Any]:
            config = load_config(self.daemon.paths, Path(str(body["workspace"])))
            return create_request(config, None, body.get("name"), [], [24, 80])

        try:
            message = await asyncio.get_running_loop().run_in_executor(None, build)
        except (CoopError, KeyError) as exc:
            return web.json_response({"ok": False, "message": str(exc)}, status=400)
        reply = await self.daemon.cmd_create(None, message)  # type: ignore[arg-type]
        return web.json_response(reply, status=200 if reply.get("ok") else 400)

    async def kill_session(self, request: web.Request) -> web.Response:
        self._full(request)
        reply = await self.daemon.cmd_kill(None,  # type: ignore[arg-type]
                                           {"sessions": [request.match_info["name"]]})
        return web.json_response(reply, status=200 if reply.get("ok") else 404)

    async def new_shell(self, request: web.Request) -> web.Response:
        self._full(request)
        found = self.daemon.find(request.match_info["name"])
        if isinstance(found, dict):
            return web.json_response(found, status=404)
        reply = await found.request({"cmd": "new_shell"})
        return web.json_response(reply, status=200 if reply.get("ok") else 400)

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.daemon.web_subscribers.add(queue)
        try:
            while not ws.closed:
                event = await queue.get()
                await ws.send_str(json.dumps(event))
        finally:
            self.daemon.web_subscribers.discard(queue)
        return ws

    # -- terminals --------------------------------------------------------------------
    async def terminal(self, request: web.Request) -> web.WebSocketResponse:
        name = request.query.get("session", "")
        pty = int(request.query.get("pty", "0") or 0)
        found = self.daemon.find(name)
        if isinstance(found, dict):
            raise web.HTTPNotFound()
        read_only = request.get(ACCESS) != "full"
        reader, writer = await found.open_stream(
            {"cmd": "attach", "session": name, "pty": pty, "kind": "web"})
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
        await ws.prepare(request)
        flt = _filter_for(found.info) if pty == 0 else None
        pump = asyncio.get_running_loop().create_task(self._to_browser(reader, ws))
        try:
            async for message in ws:
                if read_only:
                    continue
                if message.type == WSMsgType.BINARY:
                    data = message.data
                    if flt is not None:
                        result = flt.feed(data)
                        if result.blocked:
                            await ws.send_str(json.dumps({"type": "blocked", "what":
                                                          result.blocked,
                                                          "message": WARNING}))
                        data = result.forward
                    if data:
                        writer.write(encode_data(data))
                elif message.type == WSMsgType.TEXT:
                    control = json.loads(message.data)
                    if control.get("type") == "confirm_ctrl_c" and flt is not None:
                        writer.write(encode_data(flt.confirm_ctrl_c()))
                    elif control.get("type") in ("resize", "detach"):
                        writer.write(encode_control(control))
        finally:
            pump.cancel()
            writer.close()
        return ws

    @staticmethod
    async def _to_browser(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
        length = int.from_bytes(await reader.readexactly(4), "big")
        reply = json.loads(await reader.readexactly(length))  # the attach reply
        if not reply.get("ok"):
            await ws.send_str(json.dumps({"type": "error", **reply}))
            await ws.close()
            return
        parser = FrameParser(stream=True)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(262144):
                parser.feed(data)
                for kind, body in parser.frames():
                    if kind == CONTROL:
                        await ws.send_str(body.decode())
                    else:
                        await ws.send_bytes(body)
        await ws.close()
