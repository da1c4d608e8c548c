"""The web UI's transport: keystroke echo over the WebSocket, throughput to a browser
client, and 50 viewers of a flooding session against a local client's echo.

Runs as an unprivileged user (started as root, it re-runs itself as uid 54322 with a
throwaway HOME) against a real daemon with `coop serve` on a loopback port:

- echo: a byte sent on `/ws` of a `stty raw -echo; cat` agent until it comes back, through
  the input filter, vs the same through `coop attach` on a PTY;
- throughput: 100 MB of agent output until its last byte reaches a WebSocket client
  (reading as fast as it can), and a client that acknowledges like the page (`flow=1`);
- in headless Chromium, the real page: a key sent by the page until xterm.js has parsed
  its echo, and a 20 MB flood until xterm.js shows its end;
- viewers: the echo of a local `coop attach` on one session while another session floods,
  with no browser watching it and with 50 WebSocket viewers (in another process, acking
  like pages), plus what they received per second and the daemon's CPU meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

import aiohttp

from bench.common import rerun_unprivileged
from bench.sessions import COOP, CoopCli, Terminal, _cpu_seconds, _row

KEYS = int(os.environ.get("BENCH_KEYS", "300"))
TOKEN = "bench-token-0123456789abcdef0123"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
FLOOD_BYTES = 100_000_000
ECHO_AGENT = "stty raw -echo; echo READY; exec cat"
PAGE_ECHO = """async (count) => {
  // In the page: a key sent as the page sends typing, until xterm.js has parsed its echo.
  const keys = "abcdfghijklmnoprstuvwxyz", times = [];
  for (let i = 0; i < count; i += 1) {
    const parsed = new Promise((resolve) => {
      const hook = coop.term.onWriteParsed(() => { hook.dispose(); resolve(); });
    });
    const start = performance.now();
    coop.ui.link.send(keys[i % keys.length]);
    await parsed;
    times.push(performance.now() - start);
  }
  return times;
}"""
VIEWERS = """
import asyncio, json, sys, time
import aiohttp
base, session, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
headers = {"Authorization": "Bearer %s" % sys.argv[5]}
received = 0

async def viewer(http):
    global received
    async with http.ws_connect(f"{base}/ws?session={session}&pty=0&flow=1", headers=headers,
                               origin=base, max_msg_size=0) as ws:
        total = 0
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                total += len(message.data)
                received += len(message.data)
                await ws.send_str(json.dumps({"type": "ack", "bytes": total}))

async def main():
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(viewer(http)) for _ in range(count)]
        await asyncio.sleep(seconds)
        print(received, flush=True)
        for task in tasks:
            task.cancel()

asyncio.run(main())
"""


class WebBench(CoopCli):
    def __init__(self) -> None:
        super().__init__()
        self.base = ""

    def run(self) -> None:
        reply = json.loads(self._serve())
        self.base = reply["url"].split("/?")[0]
        print(f"web transport, as uid {os.getuid()}, {KEYS} keys, {self.base}")
        asyncio.run(self.echo())
        asyncio.run(self.throughput())
        self.browser()
        self.viewers()
        self.coop("kill", "--all", "-f")
        self.coop("serve", "--stop")

    def _serve(self) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return self.coop("serve", "--port", str(port), "--token", TOKEN, "--json")

    def _ws(self, http: aiohttp.ClientSession, session: str,
            flow: bool = False) -> aiohttp.client._WSRequestContextManager:
        url = f"{self.base}/ws?session={session}&pty=0" + ("&flow=1" if flow else "")
        return http.ws_connect(url, headers=HEADERS, origin=self.base, max_msg_size=0)

    async def echo(self) -> None:
        print("keystroke echo round trip:")
        name = self.new_session("sh", "-c", ECHO_AGENT)
        async with aiohttp.ClientSession() as http, self._ws(http, name) as ws:
            seen = b""
            while b"READY" not in seen:
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.BINARY:
                    seen += message.data
            times = []
            for index in range(KEYS):
                key = b"abcdfghijklmnoprstuvwxyz"[index % 24:index % 24 + 1]
                start = time.perf_counter()
                await ws.send_bytes(key)
                while True:
                    message = await ws.receive()
                    if message.type == aiohttp.WSMsgType.BINARY and key in message.data:
                        break
                times.append((time.perf_counter() - start) * 1000)
        _row("WebSocket /ws (agent PTY, input filter on)", times)
        term = Terminal(COOP + ["attach", name])
        term.read_until(b"\x1b[?25h")  # the end of the snapshot's repaint
        term.drain()
        _row("coop attach on a PTY, same session", term.echo_times(KEYS))
        term.close()

    async def throughput(self) -> None:
        print(f"output throughput, {FLOOD_BYTES // 1_000_000} MB of agent output:")
        for flow in (False, True):
            name = self.new_session(
                "sh", "-c", f"read go; yes 'flooding output 0123456789' | head -c {FLOOD_BYTES};"
                            " echo; echo FLOOD-DONE; exec sleep 1000")
            async with aiohttp.ClientSession() as http, self._ws(http, name, flow) as ws:
                await ws.receive()  # size
                await ws.receive()  # snapshot
                received = 0
                tail = b""
                start = time.perf_counter()
                await ws.send_bytes(b"\r")
                while b"FLOOD-DONE" not in tail:
                    message = await ws.receive()
                    if message.type == aiohttp.WSMsgType.BINARY:
                        received += len(message.data)
                        tail = tail[-16:] + message.data[-32:]
                        if flow:
                            await ws.send_str(json.dumps({"type": "ack", "bytes": received}))
                elapsed = time.perf_counter() - start
            label = "WebSocket client, acking like the page" if flow else "WebSocket client"
            print(f"  {label:44s} {FLOOD_BYTES / elapsed / 1e6:7.1f} MB/s of output "
                  f"({received / 1e6:.0f} MB of frames delivered)", flush=True)
            self.coop("kill", name, "-f")

    def browser(self) -> None:
        """The same flood into the real page in headless Chromium: until xterm.js shows
        the end, and how much it drew (the rest was skipped with a snapshot)."""
        chromium = shutil.which("chromium")
        if chromium is None:
            print("  (no chromium: the in-browser figure is skipped)")
            return
        from playwright.sync_api import sync_playwright

        size = 20_000_000
        echo = self.new_session("sh", "-c", ECHO_AGENT)
        name = self.new_session(
            "sh", "-c", f"read go; yes 'flooding output 0123456789' | head -c {size};"
                        " echo; echo FLOOD-DONE; exec sleep 1000")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{self.base}/?token={TOKEN}#{echo}/0")
            page.wait_for_function("() => window.coop && coop.screen().includes('READY')")
            times = page.evaluate(PAGE_ECHO, KEYS)
            print("in headless Chromium, the real page:")
            _row("key sent → its echo parsed by xterm.js", times)
            page.goto(f"{self.base}/?token={TOKEN}#{name}/0")
            page.wait_for_function("() => window.coop && coop.ui.link && "
                                   "coop.ui.link.ws.readyState === 1")
            page.wait_for_timeout(500)
            start = time.perf_counter()
            page.keyboard.press("Enter")
            page.wait_for_function("() => coop.screen().includes('FLOOD-DONE')",
                                   timeout=120000)
            elapsed = time.perf_counter() - start
            drawn = int(page.evaluate("coop.ui.link.done"))
            browser.close()
        print(f"  {'20 MB of output until xterm.js shows its end':44s} "
              f"{size / elapsed / 1e6:7.1f} MB/s of "
              f"output ({drawn / 1e6:.1f} MB drawn, the rest skipped)", flush=True)
        self.coop("kill", name, "-f")

    def viewers(self) -> None:
        print("a local client's echo while another session floods:")
        echo = self.new_session("sh", "-c", ECHO_AGENT)
        flood = self.new_session("sh", "-c", "sleep 1; exec yes 'flooding output'")
        term = Terminal(COOP + ["attach", echo])
        term.read_until(b"READY")
        term.drain()
        _row("coop attach, nobody watching the flood", term.echo_times(KEYS))
        daemon = int(json.loads(subprocess.run(COOP + ["status", "--json"], capture_output=True,
                                               text=True, cwd=self.project).stdout)
                     ["daemon"]["pid"])
        seconds = 20.0
        viewers = subprocess.Popen([sys.executable, "-c", VIEWERS, self.base, flood, "50",
                                    str(seconds), TOKEN], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        cpu_before, wall_before = _cpu_seconds([daemon]), time.monotonic()
        time.sleep(5)
        cpu = (_cpu_seconds([daemon]) - cpu_before) / (time.monotonic() - wall_before)
        _row("coop attach, 50 browsers watching the flood", term.echo_times(KEYS))
        received = int((viewers.communicate()[0] or "0").strip() or 0)
        print(f"  {'50 viewers received':44s} {received / seconds / 1e6:7.1f} MB/s in all; "
              f"daemon (web server) CPU {cpu * 100:.0f}% of a core", flush=True)
        term.close()


def main() -> None:
    if not rerun_unprivileged("web", BENCH_KEYS=str(KEYS)):
        WebBench().run()
