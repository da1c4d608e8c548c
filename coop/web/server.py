"""The web server inside the daemon: the page, REST, the event stream, terminals.

One process: `coop serve` asks the daemon to start it (aiohttp's AppRunner and TCPSite on
the daemon's own loop). Every request passes one gate (`guard`: Host, token, Origin). The
page is the bundle `npm run build` put in `static/`, served from the package. A terminal
WebSocket is relayed to the session's supervisor over a socketpair the daemon hands it
(like a local attach) by `TerminalRelay`, which adds the input filter and flow control.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from coop.ipc.aclient import AsyncConnection
from coop.sandbox.doctor import Check
from coop.web.addresses import lan_addresses
from coop.web.auth import COOKIE, Auth
from coop.web.terminal import TerminalRelay, filter_for
from coop.web.tls import Certificate, certificate

if TYPE_CHECKING:
    from coop.daemon.server import Daemon, SessionLink

ACCESS = "coop_access"
STATIC = Path(__file__).parent / "static"
MISSING_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>coop</title></head>
<body><h1>coop</h1><p>This copy of coop was installed without its browser page. Build it
with <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code> in coop's source tree, or
install a released wheel. The API (<code>/api/sessions</code>, <code>/ws</code>) works.</p>
</body></html>"""
# The page loads nothing from elsewhere and may not be framed (a framing site could trick
# taps into a terminal); xterm.js sets inline styles. No Referer leaves with a link.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".webmanifest": "application/manifest+json", ".txt": "text/plain"}


def page_check() -> Check:
    """For `coop doctor`: is the browser page in this installation? (Optional: the API
    works without it.)"""
    built = (STATIC / "index.html").is_file() and (STATIC / "app.js").is_file()
    return Check("web page", built, "built into the package" if built else
                 "not built: `coop serve` shows a page saying how to build it",
                 "in coop's source tree: cd web && npm ci && npm run build", required=False)


def _number(request: web.Request, key: str, default: int) -> int:
    try:
        return int(request.query.get(key) or default)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} is a number") from None


async def _json_with(request: web.Request, key: str, shown: str) -> dict[str, Any]:
    """The request's JSON object, which must hold the string `key`; else a 400 that says
    what to send."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get(key), str):
        raise web.HTTPBadRequest(text=json.dumps({"ok": False,
                                                  "message": f'send {{"{key}": {shown}}}'}),
                                 content_type="application/json")
    return body


class WebServer:
    def __init__(self, daemon: Daemon, host: str, port: int, token: str | None = None,
                 read_only: bool = False, tls: bool = False) -> None:
        self.daemon = daemon
        self.host = host
        self.port = port
        self.auth = Auth(token or secrets.token_urlsafe(24),
                         secrets.token_urlsafe(24) if read_only else None)
        self.runner: web.AppRunner | None = None
        self.tls: Certificate | None = None
        if tls:
            self.tls = certificate(daemon.paths.state_dir / "web-tls", self.auth.names)
        self.terminals = 0
        self.watchers = 0
        self.sockets: set[web.WebSocketResponse] = set()

    async def start(self) -> None:
        app = web.Application(middlewares=[self.guard], client_max_size=64 * 1024)
        app.on_response_prepare.append(self._secure_headers)
        app.add_routes([
            web.get("/", self.index),
            web.get("/manifest.webmanifest", self.asset),
            web.get("/icon.svg", self.asset),
            web.get("/static/{name}", self.asset),
            web.get("/api/sessions", self.list_sessions),
            web.post("/api/sessions", self.create_session),
            web.delete("/api/sessions/{name}", self.kill_session),
            web.post("/api/sessions/{name}/shell", self.new_shell),
            web.get("/api/sessions/{name}/logs", self.logs),
            web.post("/api/sessions/{name}/allow", self.allow_host),
            web.post("/api/sessions/{name}/restart", self.restart_agent),
            web.post("/api/sessions/{name}/start", self.start_session),
            web.get("/api/events", self.events),
            web.get("/ws", self.terminal),
        ])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
        await web.TCPSite(self.runner, self.host, self.port, ssl_context=context).start()

    async def stop(self) -> None:
        """Close every WebSocket first (pages then reconnect to whoever serves next):
        aiohttp would otherwise wait for them to end on their own."""
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"coop serve stopped")
        if self.runner is not None:
            await self.runner.cleanup()

    def urls(self) -> dict[str, Any]:
        """The local URL, the LAN URLs (for `--host 0.0.0.0`), their viewer-only twins,
        and with `--tls` the certificate's fingerprint (in the fragment, never sent)."""
        scheme = "https" if self.tls else "http"
        fragment = f"#sha256={self.tls.fingerprint}" if self.tls else ""
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        hosts = [local]
        if self.host in ("0.0.0.0", "::"):
            hosts += [a for a in lan_addresses() if a != local]

        def link(host: str, token: str) -> str:
            shown = f"[{host}]" if ":" in host else host
            return f"{scheme}://{shown}:{self.port}/?token={token}{fragment}"

        out: dict[str, Any] = {"url": link(local, self.auth.token),
                               "network_urls": [link(h, self.auth.token) for h in hosts[1:]],
                               "host": self.host, "port": self.port,
                               "clients": {"terminals": self.terminals,
                                           "watchers": self.watchers}}
        if self.tls:
            out["fingerprint"] = self.tls.fingerprint
        if self.auth.read_only_token:
            out["read_only_url"] = link(hosts[-1], self.auth.read_only_token)
        return out

    def summary(self) -> dict[str, Any]:
        """For `coop ls` and `coop status`: where it listens and who is connected (no
        token: those go to `coop serve` only)."""
        scheme = "https" if self.tls else "http"
        return {"address": f"{scheme}://{self.host}:{self.port}", "terminals": self.terminals,
                "watchers": self.watchers, "read_only_link": bool(self.auth.read_only_token)}

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
                                path="/", secure=self.tls is not None)
            raise response
        request[ACCESS] = access
        return await handler(request)  # type: ignore[no-any-return]

    @staticmethod
    async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    def _full(self, request: web.Request) -> None:
        if request.get(ACCESS) != "full":
            raise web.HTTPForbidden()

    # -- REST -------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        page = STATIC / "index.html"
        if not page.exists():
            return web.Response(text=MISSING_PAGE, content_type="text/html")
        text = page.read_text().replace('<meta name="coop-access" content="full">',
                                        f'<meta name="coop-access" '
                                        f'content="{request.get(ACCESS)}">')
        return web.Response(text=text, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or request.path.lstrip("/")
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": TYPES.get(path.suffix,
                                                                         "text/plain")})

    async def list_sessions(self, request: web.Request) -> web.Response:
        reply = await self.daemon.cmd_ls(None, {})  # type: ignore[arg-type]
        return web.json_response(reply["sessions"])

    async def create_session(self, request: web.Request) -> web.Response:
        self._full(request)
        body = await _json_with(request, "workspace", "PATH")
        name = body.get("name")
        return await self._create(body["workspace"], name if isinstance(name, str) else None)

    async def start_session(self, request: web.Request) -> web.Response:
        """Bring a stopped session back (its processes ended with a reboot or a crash)."""
        self._full(request)
        name = request.match_info["name"]
        stopped = {s["name"]: s for s in self.daemon.stopped_sessions()}
        if name not in stopped:
            return web.json_response({"ok": False, "message": f"{name} is not stopped"},
                                     status=404)
        return await self._create(stopped[name]["workspace"], name,
                                  list(stopped[name].get("argv") or []), revive=True)

    async def _create(self, workspace: str, name: str | None, argv: list[str] | None = None,
                      revive: bool = False) -> web.Response:
        """`create` for a workspace, as `coop -d` would send it (its Coopfile applies)."""
        from coop.commands.session import workspace_create_request
        from coop.errors import CoopError

        try:
            message = await asyncio.get_running_loop().run_in_executor(
                None, workspace_create_request, self.daemon.paths, Path(workspace), name, argv)
        except CoopError as exc:
            return web.json_response({"ok": False, "message": exc.render()}, status=400)
        reply = await self.daemon.cmd_create(None,  # type: ignore[arg-type]
                                             {**message, "revive": revive})
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

    async def restart_agent(self, request: web.Request) -> web.Response:
        """Start the agent again (after a crash loop, from a phone)."""
        self._full(request)
        reply = await self.daemon.cmd_restart(None,  # type: ignore[arg-type]
                                              {"session": request.match_info["name"]})
        return web.json_response(reply, status=200 if reply.get("ok") else 404)

    async def allow_host(self, request: web.Request) -> web.Response:
        """Approve a host the proxy refused, for the rest of the session (SPEC §12a)."""
        self._full(request)
        body = await _json_with(request, "host", "NAME")
        reply = await self.daemon.cmd_allow(None,  # type: ignore[arg-type]
                                            {"session": request.match_info["name"],
                                             "host": body["host"]})
        return web.json_response(reply, status=200 if reply.get("ok") else 400)

    async def logs(self, request: web.Request) -> web.Response:
        """A PTY's recent output as plain text (the page's history view): the lines a
        screen-redrawing terminal cannot scroll back to after a reconnect."""
        from coop.ipc.framing import CONTROL
        from coop.pty.plain import plain_text

        name = request.match_info["name"]
        lines = max(1, min(_number(request, "lines", 2000), 20000))
        _, conn = await self._stream(name, {"cmd": "logs", "session": name,
                                            "pty": _number(request, "pty", 0), "lines": lines})
        try:
            reply = await conn.receive()
            if not reply.get("ok"):
                raise web.HTTPNotFound(text=str(reply.get("message", "")))
            data = b"".join([body async for kind, body in conn.stream() if kind != CONTROL])
        finally:
            conn.close()
        return web.Response(body=plain_text(data), content_type="text/plain", charset="utf-8")

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.daemon.web_subscribers.add(queue)
        self.watchers += 1
        self.sockets.add(ws)

        async def forward() -> None:
            while True:
                await ws.send_str(json.dumps(await queue.get()))

        sender = asyncio.get_running_loop().create_task(forward())
        try:
            async for _ in ws:  # the page sends nothing; reading notices it leave
                pass
        finally:
            sender.cancel()
            self.sockets.discard(ws)
            self.watchers -= 1
            self.daemon.web_subscribers.discard(queue)
        return ws

    async def _stream(self, name: str, message: dict[str, Any]
                      ) -> tuple[SessionLink, AsyncConnection]:
        """A connection to the session's supervisor, as a client sending `message`."""
        found = self.daemon.find(name)
        if isinstance(found, dict):
            raise web.HTTPNotFound()
        return found, AsyncConnection(*await found.open_stream(message))

    # -- terminals --------------------------------------------------------------------
    async def terminal(self, request: web.Request) -> web.WebSocketResponse:
        name = request.query.get("session", "")
        pty = _number(request, "pty", 0)
        found, conn = await self._stream(
            name, {"cmd": "attach", "session": name, "pty": pty, "kind": "web"})
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
        await ws.prepare(request)
        relay = TerminalRelay(ws, conn, filter_for(found.info) if pty == 0 else None,
                              read_only=request.get(ACCESS) != "full",
                              flow=request.query.get("flow") == "1")
        self.terminals += 1
        self.sockets.add(ws)
        try:
            await relay.run()
        finally:
            self.sockets.discard(ws)
            self.terminals -= 1
        return ws
