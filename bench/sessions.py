"""Sessions against tmux: start time, keystroke echo, throughput, redraw storms, memory.

Run as an unprivileged user (started as root, it re-runs itself as uid 54322 with a
throwaway HOME). Everything is measured end to end through the real CLI and real PTYs:

- create: wall time of `coop -d -n NAME -- sleep 1000` (daemon warm) vs `tmux new -d`;
- echo: a byte written to the terminal of `coop attach` until it comes back from a
  `stty raw -echo; cat` agent, vs the same program on a bare PTY and inside `tmux attach`;
  again while another session floods output to its own attached client;
- throughput: bytes per second reaching the terminal of an attached client;
- storm: a 200x50 screen redrawn 30 times a second with colours: CPU of the daemon and the
  supervisor, and the echo latency of another session meanwhile;
- memory: PSS of every coop process of an idle session, and of 20 sessions.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import rerun_unprivileged

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
KEYS = int(os.environ.get("BENCH_KEYS", "300"))
COOP = [sys.executable, "-m", "coop"]
STORM = r"""
import sys, time, random
out = sys.stdout.buffer
rows, cols = 50, 200
frame = 0
while True:
    start = time.monotonic()
    parts = [b"\x1b[H"]
    for y in range(rows):
        parts.append(b"\x1b[%d;1H\x1b[38;5;%dm\x1b[48;5;%dm" % (y + 1, (y + frame) % 256,
                                                              (y * 7) % 256))
        parts.append((b"%04d " % frame + b"abcdefghij" * 20)[:cols])
    parts.append(b"\x1b[0m")
    out.write(b"".join(parts))
    out.flush()
    frame += 1
    time.sleep(max(0, 1 / 30 - (time.monotonic() - start)))
"""


def main() -> None:
    if rerun_unprivileged("sessions", BENCH_RUNS=str(RUNS), BENCH_KEYS=str(KEYS)):
        return
    os.environ.setdefault("TMUX_TMPDIR", tempfile.mkdtemp(prefix="coop-bench-tmux-"))
    Bench().run()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _row(label: str, values: list[float], unit: str = "ms") -> None:
    print(f"  {label:44s} p50 {statistics.median(values):7.2f} {unit}   "
          f"p99 {_pct(values, 0.99):7.2f} {unit}   (n={len(values)})", flush=True)


class Terminal:
    """A program on a PTY of its own, as a terminal emulator would run it."""

    def __init__(self, argv: list[str], rows: int = 50, cols: int = 200) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            import fcntl
            import struct
            import termios

            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvp(argv[0], argv)

    def read_until(self, needle: bytes, timeout: float = 20) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while needle not in data:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{needle!r} not seen: {data[-300:]!r}")
            if select.select([self.fd], [], [], 0.5)[0]:
                data += os.read(self.fd, 1 << 16)
        return data

    def drain(self, quiet: float = 0.3) -> None:
        while select.select([self.fd], [], [], quiet)[0]:
            try:
                os.read(self.fd, 1 << 16)
            except OSError:
                return

    def echo_times(self, count: int) -> list[float]:
        times = []
        for index in range(count):
            key = b"abcdefghijklmnopqrstuvwxyz"[index % 26:index % 26 + 1]
            start = time.perf_counter()
            os.write(self.fd, key)
            while True:
                select.select([self.fd], [], [], 5)
                if key in os.read(self.fd, 1 << 16):
                    break
            times.append((time.perf_counter() - start) * 1000)
        return times

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return int(text.split("Pss:")[1].split()[0])


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=", "-u", str(os.getuid())],
                         capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for line in out:
        if line.strip():
            child, parent = map(int, line.split())
            children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class CoopCli:
    """coop's CLI run in a project under the bench user's HOME; sessions numbered."""

    def __init__(self) -> None:
        self.project = Path(os.environ["HOME"]) / "project"
        self.project.mkdir(exist_ok=True)
        self.names = 0

    def coop(self, *args: str) -> str:
        result = subprocess.run(COOP + list(args), capture_output=True, text=True,
                                cwd=self.project, check=True)
        return result.stdout.strip()

    def new_session(self, *cmd: str) -> str:
        self.names += 1
        return self.coop("-d", "-n", f"b{self.names}", "--", *cmd)


class Bench(CoopCli):
    def __init__(self) -> None:
        super().__init__()
        self.tmux = shutil.which("tmux")

    def tmux_cmd(self, *args: str) -> None:
        assert self.tmux
        subprocess.run([self.tmux, "-L", "coopbench", *args], check=True, capture_output=True)

    def run(self) -> None:
        print(f"sessions vs tmux, as uid {os.getuid()}, {RUNS} runs / {KEYS} keys each")
        self.create()
        self.echo()
        self.throughput()
        self.storm()
        self.memory()
        self.coop("kill", "--all", "-f")
        if self.tmux:
            subprocess.run([self.tmux, "-L", "coopbench", "kill-server"], capture_output=True)

    def create(self) -> None:
        print("session create (daemon warm), whole CLI process:")
        self.coop("ls")
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            self.new_session("sleep", "1000")
            times.append((time.perf_counter() - start) * 1000)
        _row("coop -d -n NAME -- sleep 1000", times)
        if self.tmux:
            times = []
            for n in range(RUNS):
                start = time.perf_counter()
                self.tmux_cmd("new", "-d", "-s", f"c{n}", "sleep", "1000")
                times.append((time.perf_counter() - start) * 1000)
            _row("tmux new -d sleep 1000", times)
        self.coop("kill", "--all", "-f")

    def _coop_echo_terminal(self) -> Terminal:
        name = self.new_session("sh", "-c", "stty raw -echo; echo READY; exec cat")
        term = Terminal(COOP + ["attach", name])
        term.read_until(b"READY")
        term.drain()
        return term

    def _tmux_echo_terminal(self, name: str) -> Terminal:
        self.tmux_cmd("new", "-d", "-s", name, "-x", "200", "-y", "50",
                      "sh -c 'stty raw -echo; echo READY; exec cat'")
        assert self.tmux
        term = Terminal([self.tmux, "-L", "coopbench", "attach", "-t", name])
        term.read_until(b"READY")
        term.drain()
        return term

    def echo(self) -> None:
        print("keystroke echo round trip:")
        direct = Terminal(["sh", "-c", "stty raw -echo; echo READY; exec cat"])
        direct.read_until(b"READY")
        _row("bare PTY (the floor)", direct.echo_times(KEYS))
        direct.close()
        term = self._coop_echo_terminal()
        _row("coop attach", term.echo_times(KEYS))
        flood = self.new_session("sh", "-c", "sleep 1; exec yes 'flooding output'")
        with _watched(COOP + ["attach", flood]):
            _row("coop attach, another session flooding", term.echo_times(KEYS))
        term.close()
        self.coop("kill", "--all", "-f")
        if self.tmux:
            tterm = self._tmux_echo_terminal("echo")
            _row("tmux attach", tterm.echo_times(KEYS))
            self.tmux_cmd("new", "-d", "-s", "flood", "-x", "200", "-y", "50",
                          "yes 'flooding output'")
            assert self.tmux
            with _watched([self.tmux, "-L", "coopbench", "attach", "-t", "flood"]):
                _row("tmux attach, another session flooding", tterm.echo_times(KEYS))
            tterm.close()
            subprocess.run([self.tmux, "-L", "coopbench", "kill-server"], capture_output=True)

    def throughput(self) -> None:
        print("output throughput to an attached client:")
        size = 200 * 1024 * 1024
        data = Path(os.environ["HOME"]) / "project" / "blob.txt"
        data.write_bytes((b"0123456789abcdefghijklmnopqrstuvwxyz" * 30 + b"\n") * (size // 1081))
        script = "read go; cat /workspace/blob.txt; echo; echo THE-END"
        name = self.new_session("sh", "-c", script)
        term = Terminal(COOP + ["attach", name])
        term.drain(0.5)
        print(f"  {'coop attach':44s} {self._measure(term, data.stat().st_size):7.1f} MB/s",
              flush=True)
        term.close()
        if self.tmux:
            self.tmux_cmd("new", "-d", "-s", "tp", "-x", "200", "-y", "50",
                          f"sh -c 'read go; cat {data}; echo; echo THE-END; sleep 100'")
            assert self.tmux
            tterm = Terminal([self.tmux, "-L", "coopbench", "attach", "-t", "tp"])
            tterm.drain(0.5)
            print(f"  {'tmux attach':44s} {self._measure(tterm, data.stat().st_size):7.1f} MB/s",
                  flush=True)
            tterm.close()
        data.unlink()
        self.coop("kill", "--all", "-f")

    @staticmethod
    def _measure(term: Terminal, size: int) -> float:
        """MB/s from the `go` keystroke until the end marker is on the terminal."""
        term.drain(1.0)
        os.write(term.fd, b"go\r")
        start = time.perf_counter()
        tail = b""
        nudged = False
        while b"THE-END" not in tail:
            if select.select([term.fd], [], [], 5)[0]:
                chunk = tail + os.read(term.fd, 1 << 18)
                tail = b"THE-END" if b"THE-END" in chunk else chunk[-16:]
            elif not nudged:  # the keystroke was eaten while the client started up
                os.write(term.fd, b"go\r")
                start = time.perf_counter()
                nudged = True
            else:
                raise RuntimeError("throughput run stalled")
        return size / (time.perf_counter() - start) / 1e6

    def storm(self) -> None:
        print("redraw storm (200x50, 30 fps, colours) in one session, 10 s:")
        (self.project / "storm.py").write_text(STORM)
        storm = self.new_session("python3", "/workspace/storm.py")
        with _watched(COOP + ["attach", storm]):
            term = self._coop_echo_terminal()
            info = json.loads(self.coop("ls", "--json"))
            supervisor = next(s["supervisor_pid"] for s in info if s["name"] == storm)
            daemon = int((Path(os.environ["COOP_HOME"]) / "run" / "daemon.pid").read_text())
            before = (_cpu_seconds([daemon]), _cpu_seconds([supervisor]))
            start = time.perf_counter()
            echo = term.echo_times(KEYS)
            while time.perf_counter() - start < 10:
                time.sleep(0.1)
            wall = time.perf_counter() - start
            after = (_cpu_seconds([daemon]), _cpu_seconds([supervisor]))
            term.close()
        print(f"  {'daemon CPU':44s} {100 * (after[0] - before[0]) / wall:7.1f} % of a core")
        print(f"  {'storm session supervisor CPU':44s} {100 * (after[1] - before[1]) / wall:7.1f}"
              " % of a core")
        _row("echo in another session during the storm", echo)
        self.coop("kill", "--all", "-f")

    def memory(self) -> None:
        print("memory (PSS of all coop processes of a session: supervisor, outer, init):")
        self.new_session("sleep", "1000")
        info = json.loads(self.coop("ls", "--json"))
        pids = _descendants(info[0]["supervisor_pid"])
        agent = [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == "sleep"]
        own = [p for p in pids if p not in agent]
        print(f"  {'one idle session':44s} {sum(map(_pss_kb, own)) / 1024:7.1f} MB")
        for _ in range(19):
            self.new_session("sleep", "1000")
        info = json.loads(self.coop("ls", "--json"))
        daemon = int((Path(os.environ["COOP_HOME"]) / "run" / "daemon.pid").read_text())
        total = sum(_pss_kb(p) for p in _descendants(daemon))
        for session in info:
            total += sum(_pss_kb(p) for p in _descendants(session["supervisor_pid"])
                         if Path(f"/proc/{p}/comm").read_text().strip() != "sleep")
        print(f"  {'20 sessions + daemon + zygote':44s} {total / 1024:7.1f} MB")


@contextmanager
def _watched(argv: list[str], rows: int = 50, cols: int = 200) -> Iterator[Terminal]:
    """A client on its own terminal whose output a separate process reads and discards
    as fast as it can (a flooded session's watcher), for the duration."""
    term = Terminal(argv, rows=rows, cols=cols)
    reader = subprocess.Popen([sys.executable, "-c", DISCARD, str(term.fd)],
                              pass_fds=(term.fd,))
    time.sleep(1.5)
    try:
        yield term
    finally:
        reader.kill()
        term.close()


DISCARD = """
import os, sys
fd = int(sys.argv[1])
while True:
    os.read(fd, 1 << 18)
"""
