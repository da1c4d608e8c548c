"""The TUI: first paint with 20 sessions, a 30 fps redraw storm, keystroke echo.

Runs Textual headless (`App.run_test`) as an unprivileged user against a real daemon:
- start-up: wall time from launching the process to a dashboard listing 20 sessions;
- storm: the terminal view of a session redrawing a 200x50 coloured screen 30 times a
  second, for 10 s: redraw batches per second and the TUI process's CPU;
- echo: a key pressed in the terminal view until its echo is on the widget's screen.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BENCH_UID, demote
from bench.sessions import STORM

ROOT = Path(__file__).resolve().parent.parent
PAINT = """
import time, asyncio
from coop.tui.app import CoopApp
async def main():
    app = CoopApp()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.table.row_count < 20:
            await pilot.pause(0.005)
        print("painted", flush=True)
asyncio.run(main())
"""
INSIDE = """
import asyncio, json, resource, time
from textual import events
from coop.tui.app import CoopApp
from coop.tui.terminal import Terminal

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

async def open_terminal(app, pilot, name):
    table = app.table
    table.move_cursor(row=app.shown.index(name))
    await pilot.press("enter")
    while not isinstance(app.screen.focused, Terminal):
        await pilot.pause(0.01)
    return app.screen.focused

async def main():
    app = CoopApp()
    async with app.run_test(size=(200, 54)) as pilot:
        while len(app.shown) < 2:
            await pilot.pause(0.05)
        term = await open_terminal(app, pilot, "storm")
        await pilot.pause(1.0)
        frames, start_cpu, start = term.frames, cpu(), time.perf_counter()
        await asyncio.sleep(10)
        wall = time.perf_counter() - start
        storm = {"fps": (term.frames - frames) / wall, "cpu": (cpu() - start_cpu) / wall}
        await pilot.press("ctrl+right_square_bracket")
        await pilot.pause(0.3)
        term = await open_terminal(app, pilot, "echo")
        await pilot.pause(0.5)
        times = []
        for i in range(100):
            key = "abcdefghijklmnopqrstuvwxyz"[i % 26]
            before = "".join(term.text()).count(key)
            start = time.perf_counter()
            term.post_message(events.Key(key, key))  # what a key press delivers
            while "".join(term.text()).count(key) <= before:
                await asyncio.sleep(0.0005)
            times.append((time.perf_counter() - start) * 1000)
        print(json.dumps({"storm": storm, "echo": times}))
asyncio.run(main())
"""


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="coop-bench-tui-"))
    os.chmod(home, 0o755)
    if os.getuid() == 0:
        os.chown(home, BENCH_UID, BENCH_UID)
    env = {"HOME": str(home), "COOP_HOME": str(home / "coop"), "PATH": "/usr/bin:/bin",
           "TERM": "xterm-256color", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
           "COOP_DAEMON_IDLE_TIMEOUT": "300"}
    coop = [sys.executable, "-m", "coop"]

    def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, cwd=home, preexec_fn=demote, text=True,
                              capture_output=True, check=True, timeout=timeout)

    try:
        for n in range(20):
            run(coop + ["-d", "-n", f"s{n:02d}", "--", "sleep", "1000"])
        paints = []
        for _ in range(5):
            start = time.perf_counter()
            run([sys.executable, "-c", PAINT])
            paints.append((time.perf_counter() - start) * 1000)
        run(coop + ["kill", "--all", "-f"])
        (home / "storm.py").write_text(STORM)
        if os.getuid() == 0:
            os.chown(home / "storm.py", BENCH_UID, BENCH_UID)
        run(coop + ["-d", "-n", "storm", "-w", str(home), "--", "python3",
                    "/workspace/storm.py"])
        run(coop + ["-d", "-n", "echo", "--", "sh", "-c", "stty raw -echo; exec cat"])
        result = json.loads(run([sys.executable, "-c", INSIDE], timeout=120).stdout
                            .strip().splitlines()[-1])
        echo = sorted(result["echo"])
        print("TUI (Textual headless), as an unprivileged user")
        print(f"  {'first paint, 20 sessions (whole process)':44s} "
              f"median {statistics.median(paints):6.0f} ms (n={len(paints)})")
        print(f"  {'30 fps storm: redraw batches per second':44s} "
              f"{result['storm']['fps']:6.1f}")
        print(f"  {'30 fps storm: TUI CPU':44s} {100 * result['storm']['cpu']:6.1f} % of a core")
        print(f"  {'key to echo on the widget':44s} p50 {statistics.median(echo):6.2f} ms   "
              f"p99 {echo[int(len(echo) * 0.99) - 1]:6.2f} ms")
    finally:
        subprocess.run(coop + ["kill", "--all", "-f"], env=env, cwd=home, preexec_fn=demote,
                       capture_output=True)
        subprocess.run(coop + ["daemon", "stop"], env=env, cwd=home, preexec_fn=demote,
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
