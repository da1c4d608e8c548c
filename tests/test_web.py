"""`coop serve` (the server side of the web UI): auth, Host/Origin checks, the API and
terminal WebSockets with the input filter, against a real daemon run by the test user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from coop.pty.filter import WARNING
from tests.helpers import TOKEN, User, free_port

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def status(url: str, method: str = "GET", **kwargs: object) -> int:
    async with aiohttp.ClientSession() as http, \
            http.request(method, url, allow_redirects=False,
                         **kwargs) as response:  # type: ignore[arg-type]
        return response.status


def test_everything_is_403_without_the_token(served: tuple[User, str]) -> None:
    _, base = served
    for method, path in (("GET", "/"), ("GET", "/static/app.js"),
                         ("GET", "/manifest.webmanifest"), ("GET", "/api/sessions"),
                         ("POST", "/api/sessions"), ("GET", "/api/sessions/x/logs"),
                         ("DELETE", "/api/sessions/x"), ("POST", "/api/sessions/x/shell"),
                         ("GET", "/api/events"), ("GET", "/ws?session=x&pty=0")):
        assert run(status(base + path, method)) == 403, path
        assert run(status(base + path + ("&" if "?" in path else "?") + "token=wrong",
                          method)) == 403


def test_token_becomes_a_cookie_and_leaves_the_address_bar(served: tuple[User, str]) -> None:
    _, base = served

    async def check() -> tuple[int, str, str, int]:
        # Browsers keep cookies for IP hosts; aiohttp's jar needs to be told to.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/?token={TOKEN}", allow_redirects=False) as first:
                cookie = first.headers.get("Set-Cookie", "")
                location = first.headers.get("Location", "")
            async with http.get(f"{base}/api/sessions") as second:  # the cookie jar now
                return first.status, cookie, location, second.status

    code, cookie, location, after = run(check())
    assert code == 302 and location == "/"
    assert "coop_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert after == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert run(status(f"{base}/api/sessions", headers=bearer)) == 200


def test_the_page_its_manifest_and_security_headers(served: tuple[User, str]) -> None:
    _, base = served

    async def fetch(path: str) -> tuple[int, dict[str, str], str]:
        async with aiohttp.ClientSession() as http, \
                http.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            return response.status, dict(response.headers), await response.text()

    code, headers, page = run(fetch("/"))
    assert code == 200 and '<script src="/static/app.js">' in page
    assert 'src="http' not in page and 'href="http' not in page  # nothing from a CDN
    assert '<meta name="coop-access" content="full">' in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
    code, headers, text = run(fetch("/manifest.webmanifest"))
    manifest = json.loads(text)
    assert headers["Content-Type"].startswith("application/manifest+json")
    assert manifest["display"] == "standalone" and manifest["icons"][0]["src"] == "/icon.svg"
    code, headers, text = run(fetch("/static/app.js"))
    assert code == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "xterm" in text  # xterm.js is bundled in, not fetched
    assert run(fetch("/static/../server.py"))[0] == 404


def test_foreign_host_and_origin_are_refused(served: tuple[User, str]) -> None:
    _, base = served
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert run(status(f"{base}/api/sessions", headers={**bearer, "Host": "evil.example"})) == 403

    async def websocket(origin: str) -> str:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(f"{base}/api/events", headers=bearer, origin=origin):
                    return "open"
            except aiohttp.WSServerHandshakeError as exc:
                return str(exc.status)

    assert run(websocket("http://evil.example")) == "403"
    assert run(websocket(base)) == "open"


def test_terminal_websocket_echo_and_the_input_filter(served: tuple[User, str]) -> None:
    user, base = served
    (user.workspace / "Coopfile").write_text("input_filter: {block: ['\\x18\\x18']}\n")
    user.chown(user.workspace)
    assert user.coop("-d", "-n", "web", "--", "sh").returncode == 0

    controls: list[dict[str, Any]] = []

    async def session() -> dict[str, str]:
        seen: dict[str, str] = {}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/ws?session=web&pty=0", headers=headers,
                                origin=base) as ws:
            async def read_until(needle: bytes) -> bytes:
                data = b""
                while needle not in data:
                    message = await asyncio.wait_for(ws.receive(), 60)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        data += message.data
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        controls.append(json.loads(message.data))
                return data

            await read_until(b"$")
            for chunk in (b"ec", b"ho we", b"b-$((2*21))\r"):
                await ws.send_bytes(chunk)
            seen["echo"] = (await read_until(b"web-42\r\n")).decode(errors="replace")
            await ws.send_bytes(b"\x04")  # Ctrl+D from a phone: must not end the agent
            for chunk in (b"ex", b"i", b"t", b"\r"):
                await ws.send_bytes(chunk)
            await ws.send_bytes(b"\x18")  # the Coopfile's own sequence, split in two
            await ws.send_bytes(b"\x18")
            await ws.send_bytes(b"echo still-$((3*3))\r")
            seen["after"] = (await read_until(b"still-9\r\n")).decode(errors="replace")
        return seen

    seen = run(session())
    assert "web-42" in seen["echo"] and "still-9" in seen["after"]
    blocked = [c for c in controls if c.get("type") == "blocked"]
    assert [b["what"] for b in blocked] == [["Ctrl+D"], ["exit⏎"], ["'\\x18\\x18'"]]
    assert all(b["message"] == WARNING for b in blocked)
    [info] = json.loads(user.coop("ls", "--json").stdout)
    assert info["ptys"][0]["alive"]  # the agent never saw them


def test_bad_tokens_are_throttled_and_a_good_client_still_passes(
        served: tuple[User, str]) -> None:
    from coop.web.auth import FAILURE_LIMIT, FAILURE_WINDOW

    _, base = served

    async def storm() -> tuple[dict[int, int], float, list[int]]:
        codes: dict[int, int] = {}
        async with aiohttp.ClientSession() as http:
            async def get(token: str) -> int:
                async with http.get(f"{base}/api/sessions", allow_redirects=False,
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                    return response.status

            async def bad(i: int) -> None:
                status = await get(f"guess-{i}")
                codes[status] = codes.get(status, 0) + 1

            begin = time.monotonic()
            for start in range(0, 10_000, 500):
                await asyncio.gather(*(bad(i) for i in range(start, start + 500)))
            took = time.monotonic() - begin
            # Guess until this address is throttled (a guess gets 429), then the right token.
            guesses = 0
            while await get(f"one-more-{guesses}") != 429:
                guesses += 1
                assert guesses <= FAILURE_LIMIT, "guessing is never throttled"
            return codes, took, [429, await get(TOKEN)]

    codes, took, around = run(storm())
    # Answered 403 at most FAILURE_LIMIT times per FAILURE_WINDOW the storm lasted (however
    # long that was on this machine), 429 at once otherwise.
    assert set(codes) <= {403, 429}
    assert codes.get(403, 0) <= FAILURE_LIMIT * (int(took // FAILURE_WINDOW) + 1), (codes, took)
    assert around == [429, 200]  # the right token passes while guesses are refused


BEARER = {"Authorization": f"Bearer {TOKEN}"}


class Terminal:
    """A raw `/ws` client: what a page receives, frame by frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.data = b""
        self.controls: list[dict[str, Any]] = []

    async def receive(self, timeout: float = 60) -> None:
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message.type == aiohttp.WSMsgType.BINARY:
            self.data += message.data
        elif message.type == aiohttp.WSMsgType.TEXT:
            self.controls.append(json.loads(message.data))
        else:
            raise ConnectionError(f"the server closed the WebSocket ({message.type})")

    async def until(self, needle: bytes, timeout: float = 60, start: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.data[start:]:
            await self.receive(max(0.01, deadline - time.monotonic()))


def test_held_bytes_are_released_and_bad_controls_get_an_error(
        served: tuple[User, str]) -> None:
    user, base = served
    assert user.coop("-d", "-n", "held", "--", "sh").returncode == 0

    async def session() -> Terminal:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/ws?session=held&pty=0", headers=BEARER,
                                origin=base) as ws:
            term = Terminal(ws)
            await term.until(b"$")
            mark = len(term.data)
            await ws.send_bytes(b"q")  # could be the start of `quit⏎`: held, then let go
            await term.until(b"q", start=mark)  # released, however late
            await ws.send_str("{not json")
            await ws.send_str(json.dumps({"type": "teleport"}))
            await ws.send_bytes(b"\x15echo ok-$((4*4))\r")  # Ctrl+U drops the q
            await term.until(b"ok-16\r\n")
            return term

    term = run(session())
    errors = [c for c in term.controls if c.get("type") == "error"]
    assert [e["error"] for e in errors] == ["INVALID_COMMAND", "INVALID_COMMAND"]
    assert "teleport" in errors[1]["message"]
    assert {"type": "size", "rows": 24, "cols": 80} in term.controls


def most_a_stalled_relay_still_delivers() -> int:
    """What can still reach a page that stopped acknowledging, once it acknowledges again:
    whatever sits between the PTY and the relay when the relay stopped reading. That is the
    relay's StreamReader (asyncio stops reading the socket past twice its limit, plus the
    read in flight), the frames of one `stream()` read in its parser, the kernel's socket
    buffer, the supervisor's queue for this client (past it the queue is dropped and a
    `resync` snapshot sent instead), and the PTY's last read and the snapshot. Nothing here
    depends on how fast the machine is."""
    import asyncio.selector_events

    from coop.daemon.pty import READ_SIZE
    from coop.daemon.server import STREAM_LIMIT
    from coop.ipc.aclient import STREAM_READ
    from coop.ipc.conn import QUEUE_LIMIT

    transport_read = int(asyncio.selector_events._SelectorTransport.max_size)  # type: ignore[attr-defined]
    socket_buffer = 2 * int(Path("/proc/sys/net/core/wmem_default").read_text())
    return (2 * STREAM_LIMIT + transport_read + STREAM_READ + socket_buffer + QUEUE_LIMIT
            + 2 * READ_SIZE)


def test_a_page_that_does_not_acknowledge_is_skipped_ahead(served: tuple[User, str]) -> None:
    from coop.daemon.pty import READ_SIZE
    from coop.web.terminal import HIGH_WATER

    user, base = served
    bound = most_a_stalled_relay_still_delivers()
    lines = 2 * bound // 502 + 1  # the backlog: twice what may get through after the stall
    done = user.workspace / "flood-finished"
    flood = (f"read go; yes $(printf '%0500d' 7) | head -n {lines}; echo flood-done; "
             "touch flood-finished")
    assert user.coop("-d", "-n", "flood", "--", "sh", "-c", flood + "; exec sleep 1000"
                     ).returncode == 0

    async def session() -> tuple[int, Terminal]:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/ws?session=flood&pty=0&flow=1", headers=BEARER,
                                origin=base, max_msg_size=0) as ws:
            term = Terminal(ws)
            await term.receive()  # size
            await term.receive()  # the snapshot
            await ws.send_bytes(b"\r")  # go
            # Read all the relay sends, acknowledging nothing, until the whole flood has
            # left the PTY (however long that takes here), and then until it is quiet.
            deadline = time.monotonic() + 600
            while not done.exists():
                assert time.monotonic() < deadline, "the flood did not finish"
                with contextlib.suppress(asyncio.TimeoutError):
                    await term.receive(timeout=0.2)
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    await term.receive(timeout=2)
            stalled = len(term.data)
            # Acknowledge everything: the relay resumes, past what the PTY queue dropped.
            while b"flood-done" not in term.data[stalled:]:
                await ws.send_str(json.dumps({"type": "ack", "bytes": len(term.data)}))
                await term.receive(timeout=60)
            return stalled, term

    stalled, term = run(session())
    assert stalled <= HIGH_WATER + READ_SIZE  # it stopped sending while unacknowledged
    assert {"type": "resync", "pty": 0} in term.controls
    # Skipped ahead with a snapshot: not the backlog of `lines` lines.
    assert len(term.data) - stalled <= bound < lines * 502 // 2


def test_tls_serves_the_certificate_whose_fingerprint_it_prints(
        session_user: User) -> None:
    import hashlib
    import ssl

    port = free_port()
    result = session_user.coop("serve", "--port", str(port), "--token", TOKEN, "--tls",
                               "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["url"].startswith(f"https://127.0.0.1:{port}/?token={TOKEN}#sha256=")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    digest = hashlib.sha256(der).hexdigest().upper()
    assert reply["fingerprint"].replace(":", "") == digest
    assert reply["url"].endswith(reply["fingerprint"])
    assert run(status(f"https://127.0.0.1:{port}/api/sessions", headers=BEARER,
                      ssl=False)) == 200
    assert run(status(f"https://127.0.0.1:{port}/api/sessions", ssl=False)) == 403
    key = session_user.coop_home / "state" / "web-tls" / "key.pem"
    assert key.stat().st_mode & 0o077 == 0


def qr_rows(printed: str) -> list[str]:
    """The lines of `printed` that draw a QR code (half blocks)."""
    return [line for line in printed.splitlines() if line and set(line) <= set("█▀▄ ")]


def assert_qr_of(printed: str, url: str) -> None:
    """`printed` draws the QR code of `url`, module for module."""
    import segno

    expected = segno.make(url, error="l", micro=False)
    rows = qr_rows(printed)
    modules: list[list[bool]] = []  # two module rows per text row; a dark module is a space
    for line in rows:
        modules.append([ch in " ▄" for ch in line])
        modules.append([ch in " ▀" for ch in line])
    width = len(rows[0]) if rows else 0
    border = int((width - expected.symbol_size(border=0)[0]) // 2)
    drawn = [row[border:width - border] for row in modules[border:border + width - 2 * border]]
    assert drawn == [[bool(cell) for cell in row] for row in expected.matrix]


def test_serve_on_the_lan_prints_a_qr_code_of_the_lan_url(session_user: User) -> None:
    """The QR code is for a phone: it holds an address a phone can reach, not 127.0.0.1."""
    from coop.web.addresses import lan_addresses

    if not lan_addresses():
        pytest.skip("this machine has no LAN address to serve a phone on")
    port = free_port()  # a random token: this server is reachable from the LAN
    printed = session_user.coop("serve", "--host", "0.0.0.0", "--port", str(port),
                                "--qr").stdout.decode()
    lan = next(line.split()[-1] for line in printed.splitlines() if line.startswith("network:"))
    assert f"://{lan_addresses()[0]}:{port}/?token=" in lan
    assert_qr_of(printed, lan)


def test_serve_on_loopback_says_how_to_reach_it_from_a_phone(session_user: User) -> None:
    port = free_port()
    result = session_user.coop("serve", "--port", str(port), "--token", TOKEN, "--qr")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.decode()
    assert f"local:    http://127.0.0.1:{port}/?token={TOKEN}" in printed
    assert qr_rows(printed) == []  # a phone cannot open 127.0.0.1
    assert "To open it on your phone: `coop serve --stop`, then " \
        "`coop serve --host 0.0.0.0 --tls`" in printed


def test_a_busy_port_says_so_and_suggests_a_free_one(session_user: User) -> None:
    import re

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = session_user.coop("serve", "--port", str(port))
        assert result.returncode == 1
        error = result.stderr.decode()
        assert f"port {port} is in use" in error, error
        suggested = re.search(r"`coop serve --port (\d+)`", error)
        assert suggested and int(suggested.group(1)) != port, error
    again = session_user.coop("serve", "--port", suggested.group(1))
    assert again.returncode == 0, again.stderr


def test_ls_counts_browsers(served: tuple[User, str]) -> None:
    user, base = served
    assert user.coop("-d", "-n", "watched", "--", "sh").returncode == 0

    async def watch() -> str:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/ws?session=watched&pty=0", headers=BEARER,
                                origin=base) as ws:
            await ws.receive()
            listing = await asyncio.to_thread(user.coop, "ls")
            return listing.stdout.decode()

    listing = run(watch())
    assert f"web: serving on {base} · 1 browser terminal(s)" in listing
    assert listing.splitlines()[1].split()[:1] == ["watched"]
    assert "1 web" in listing.splitlines()[1]
    assert "web: serving on" in user.coop("status").stdout.decode()


def test_the_token_is_never_written_to_a_file(served: tuple[User, str]) -> None:
    user, base = served
    assert user.coop("-d", "-n", "quiet", "--", "sh").returncode == 0
    assert run(status(f"{base}/?token={TOKEN}")) == 302  # to the cookie
    assert run(status(f"{base}/api/sessions?token=wrong-{TOKEN}")) == 403
    assert run(status(f"{base}/api/sessions", headers=BEARER)) == 200
    assert user.coop("serve", "--stop").stdout == b"the web server stopped\n"
    assert user.coop("serve", "--stop").stdout == b"the web server was not running\n"
    found = [path for path in user.coop_home.rglob("*")
             if path.is_file() and not path.is_socket() and TOKEN.encode() in path.read_bytes()]
    assert found == []
    assert (user.coop_home / "state" / "daemon.log").read_text().count("web server") >= 1


def test_bodies_are_capped_and_the_server_survives(served: tuple[User, str]) -> None:
    user, base = served
    assert user.coop("-d", "-n", "capped", "--", "sh").returncode == 0
    huge = json.dumps({"workspace": "x" * 200_000})
    assert run(status(f"{base}/api/sessions", "POST", headers=BEARER, data=huge)) == 413

    async def oversized_frame() -> aiohttp.WSMsgType:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/ws?session=capped&pty=0", headers=BEARER,
                                origin=base) as ws:
            try:
                await ws.send_bytes(b"y" * (2 << 20))
            except ConnectionError:
                return aiohttp.WSMsgType.CLOSED  # refused before the client finished sending
            while True:
                message = await asyncio.wait_for(ws.receive(), 60)
                if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    return message.type

    assert run(oversized_frame()) in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                      aiohttp.WSMsgType.CLOSING)
    assert run(status(f"{base}/api/sessions", headers=BEARER)) == 200
    [info] = json.loads(user.coop("ls", "--json").stdout)
    assert info["ptys"][0]["alive"]
