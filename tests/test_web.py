"""`coop serve` (the server side of the web UI): auth, Host/Origin checks, the API and
terminal WebSockets with the input filter, against a real daemon run by the test user."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from coop.pty.filter import WARNING
from tests.helpers import TOKEN, User

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
    for method, path in (("GET", "/"), ("GET", "/api/sessions"), ("POST", "/api/sessions"),
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
                    message = await asyncio.wait_for(ws.receive(), 10)
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
            await asyncio.sleep(0.5)
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


def test_bad_tokens_do_not_slow_a_good_client(served: tuple[User, str]) -> None:
    _, base = served

    async def storm() -> tuple[dict[int, int], float]:
        codes: dict[int, int] = {}
        async with aiohttp.ClientSession() as http:
            async def bad(i: int) -> None:
                async with http.get(f"{base}/api/sessions?token=guess-{i}",
                                    allow_redirects=False) as response:
                    codes[response.status] = codes.get(response.status, 0) + 1

            for start in range(0, 10_000, 500):
                await asyncio.gather(*(bad(i) for i in range(start, start + 500)))
            begin = time.perf_counter()
            async with http.get(f"{base}/api/sessions",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as good:
                assert good.status == 200
            return codes, time.perf_counter() - begin

    codes, elapsed = run(storm())
    assert set(codes) <= {403, 429} and codes.get(429, 0) > 9000  # throttled after a few
    assert elapsed < 0.5
