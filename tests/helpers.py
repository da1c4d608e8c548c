"""Running coop the way a user does: a real process, as an unprivileged user.

When the tests run as root (as in CI), each `User` other than root is a throwaway uid with
no passwd entry and a home under /home, because root hides exactly the bugs our users
would hit (and /home is where real users keep their secrets).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import reach


def _throwaway_uid() -> int:
    """A uid for this test run alone, so that two runs at once (and their clean-up with
    `pkill -u`) never touch each other's processes: one no account has and no process runs
    as, locked for the run's lifetime (the lock goes with the process, however it ends).
    Starting from the pid spreads the runs out; the lock settles the rare tie that
    `pid % 20000` allows. The locks live where only root writes: nobody can plant one."""
    import fcntl
    import pwd

    if os.getuid() != 0:
        return os.getuid()  # unused: the suite runs as its user
    busy = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit():
                busy.add(entry.stat().st_uid)
    locks = Path("/run/coop-tests") if Path("/run").is_dir() else Path("/var/tmp/coop-tests")
    locks.mkdir(mode=0o700, exist_ok=True)
    if locks.lstat().st_uid != 0 or not locks.is_dir() or locks.is_symlink():
        raise RuntimeError(f"{locks} is not root's own directory: remove it")
    for step in range(20000):
        uid = 40000 + (os.getpid() + step) % 20000
        if uid in busy:
            continue
        try:
            pwd.getpwuid(uid)
            continue  # a real account: its processes are not ours to kill
        except KeyError:
            pass
        try:
            fd = os.open(locks / f"uid-{uid}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _UID_LOCK.append(fd)
        return uid
    raise RuntimeError("no free throwaway uid in 40000-59999")


_UID_LOCK: list[int] = []
THROWAWAY_UID = _throwaway_uid()
COOP = [sys.executable, "-m", "coop"]
TOKEN = "t0k3n-for-the-tests-0123456789abcdef"
"""The web tests' `coop serve --token`."""


def need(*tools: str, install: str) -> str:
    """The path of the first of `tools` installed, or skip the test saying what to install
    (the suite runs with -ra, so the summary lists why). Other distributions' package
    names: README, "Prerequisites"."""
    search = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    for tool in tools:
        found = shutil.which(tool, path=search)
        if found:
            return found
    pytest.skip(f"{tools[0]} not installed: {install} (README, Prerequisites)")


def _dynamically_linked(path: str) -> bool:
    """Whether an ELF file asks for a program interpreter (PT_INTERP): a binary that does
    cannot run in a base holding nothing but itself."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return True
        order = "<" if head[5] == 1 else ">"
        if head[4] == 2:  # 64-bit
            (offset,), (size, count) = (struct.unpack_from(order + "Q", head, 32),
                                        struct.unpack_from(order + "HH", head, 54))
        else:
            (offset,), (size, count) = (struct.unpack_from(order + "I", head, 28),
                                        struct.unpack_from(order + "HH", head, 42))
        f.seek(offset)
        table = f.read(size * count)
    return any(struct.unpack_from(order + "I", table, n * size)[0] == 3 for n in range(count))


def static_busybox() -> Path:
    """A statically linked busybox, for bases that hold nothing else (Debian's
    busybox-static is /bin/busybox; Alpine's is busybox.static), or skip the test."""
    path = need("busybox.static", "busybox", install="apt-get install busybox-static")
    if _dynamically_linked(path):
        pytest.skip(f"{path} is dynamically linked: apt-get install busybox-static "
                    "(README, Prerequisites)")
    return Path(path)


def busybox_rootfs(root: Path, user: User) -> Path:
    """A tiny `dir:` base: a static busybox with the applets the tests use, and /etc."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(static_busybox(), root / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "ls", "sleep", "true", "false", "test", "mkdir"):
        (root / "bin" / applet).symlink_to("busybox")
    user.chown(root)
    return root


def registry_server() -> str:
    """An OCI distribution registry: Debian's and Alpine's `docker-registry`, Fedora's
    `registry` (docker-distribution), or skip the test."""
    return need("docker-registry", "registry", install="apt-get install docker-registry")


def wait_for(predicate: Callable[[], object], timeout: float = 60,
             what: str = "condition") -> None:
    """Poll until `predicate()` is true: a condition, never a guess at how long it takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A loopback port for a server the test starts later (`coop serve`, a registry, a port
    forward), reserved so that nobody else gets it meanwhile: a connection to it is left in
    TIME_WAIT, and for a minute the kernel hands that port to no `bind(0)` and no outgoing
    connection, while a server that sets SO_REUSEADDR (asyncio, aiohttp, Go, http.server
    all do) can still listen on it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # the side that closes first is the one left in TIME_WAIT
    return port


@dataclass
class User:
    """Who runs coop in a test, with their own home and project directory."""

    uid: int
    gid: int
    home: Path
    workspace: Path
    coop_home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "PATH": "/usr/local/bin:/usr/bin:/bin",
               "COOP_HOME": str(self.coop_home), "LANG": "C.UTF-8", "TERM": "xterm-256color",
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        env.update(self.extra_env)
        env.update(extra)
        return env

    def _demote(self) -> None:
        if os.getuid() == 0 and self.uid != 0:
            reach.demote(self.uid, self.gid)

    def run(self, args: list[str], *, input: bytes | None = None, cwd: Path | None = None,
            timeout: float = 120, env: Mapping[str, str] | None = None,
            stdin: int | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a command as this user and capture its output."""
        return subprocess.run(args, input=input, stdin=stdin, capture_output=True,
                              cwd=cwd or self.workspace, timeout=timeout,
                              env=dict(env or self.env()), preexec_fn=self._demote)

    def coop(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return self.run(COOP + list(args), **kwargs)  # type: ignore[arg-type]

    def popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("cwd", self.workspace)
        kwargs.setdefault("env", self.env())
        return subprocess.Popen(args, preexec_fn=self._demote, **kwargs)  # type: ignore[call-overload, no-any-return]

    def chown(self, path: Path) -> None:
        if os.getuid() == 0:
            for root, dirs, files in os.walk(path):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, self.uid, self.gid)


def make_user(tmp: Path, uid: int) -> User:
    """A user with a fresh home (under /home when we can) and a project."""
    if os.getuid() == 0 and uid != 0:
        home = Path(f"/home/coop-test-{uid}-{os.getpid()}")
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
    else:
        home = tmp / "home"
        home.mkdir()
    workspace = tmp / "project"
    workspace.mkdir()
    user = User(uid, uid if uid else 0, home, workspace, tmp / "coop-home")
    user.coop_home.mkdir()
    for path in (home, workspace, user.coop_home):
        user.chown(path)
    os.chmod(tmp, 0o755)
    return user


@dataclass
class PtyRun:
    """A process on a real PTY, as if a user ran it in a terminal."""

    pid: int
    fd: int
    output: bytearray = field(default_factory=bytearray)

    def read_until(self, needle: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; output: {bytes(self.output)!r}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {needle!r}; output: {bytes(self.output)!r}")
                self.output += chunk
        return bytes(self.output)

    def read_count(self, needle: bytes, count: int, timeout: float = 60) -> None:
        """Read until `needle` has appeared `count` times."""
        deadline = time.monotonic() + timeout
        while self.output.count(needle) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen {count} times: {bytes(self.output)!r}")
            self._drain(0.05)

    def settle(self, quiet: float = 0.3) -> None:
        """Read until nothing has arrived for `quiet` seconds."""
        before = -1
        while before != len(self.output):
            before = len(self.output)
            self._drain(quiet)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._drain()
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._drain(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"still running; output: {bytes(self.output)!r}")

    def _drain(self, timeout: float = 0) -> None:
        while select.select([self.fd], [], [], timeout)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk
            timeout = 0


def spawn_on_pty(user: User, args: list[str], size: tuple[int, int] = (30, 100)) -> PtyRun:
    """Start `args` as `user` with a new PTY as its controlling terminal."""
    import fcntl
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
            os.chdir(user.workspace)
            user._demote()
            os.execve(args[0], args, user.env())
        finally:
            os._exit(127)
    return PtyRun(pid, fd)


def screen_of(output: bytes, rows: int, cols: int) -> list[str]:
    """What a terminal of that size shows after `output` (a reference pyte screen)."""
    import pyte

    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    stream.feed(output)
    return [line.rstrip() for line in screen.display]


FULLSCREEN_APP = r'''
import sys, os, time
out = sys.stdout
out.write("\x1b[?1049h\x1b[2J\x1b[H")
out.write("\x1b[1;44;37m  coop test app  \x1b[0m\r\n")
out.write("\x1b[5;10H\x1b[31mred\x1b[0m \x1b[32mgreen\x1b[0m \x1b[1mbold\x1b[0m 中文")
out.write("\x1b[8;3Hpid=%d" % os.getpid())
out.write("\x1b[10;1Hlines typed: 0")
out.flush()
count = 0
for line in sys.stdin:
    count += 1
    out.write("\x1b[10;1H\x1b[2Klines typed: %d (last: %s)" % (count, line.strip()))
    out.flush()
    if line.strip() == "quit":
        break
out.write("\x1b[?1049l")
'''


class Hello(http.server.BaseHTTPRequestHandler):
    """A service on the host that answers every GET with "hello from the host PATH"."""

    def do_GET(self) -> None:
        body = f"hello from the host {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def hello_server() -> http.server.ThreadingHTTPServer:
    """A `Hello` server on a free port of the host's 127.0.0.1, serving in a thread."""
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def crash_everything(user: User) -> None:
    """What a reboot does to coop: the daemon and every session's processes gone at once
    (SIGKILL, no clean-up), their files left as they were."""
    import json

    for session in json.loads(user.coop("ls", "--json").stdout):
        if session.get("supervisor_pid"):
            sid = os.getsid(int(session["supervisor_pid"]))
            subprocess.run(["pkill", "-9", "-s", str(sid)], check=False)
    daemon = int(json.loads(user.coop("status", "--json").stdout)["daemon"]["pid"])
    os.kill(daemon, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{daemon}/cmdline").exists() and \
            Path(f"/proc/{daemon}/cmdline").read_bytes():  # a zombie's is empty
        assert time.monotonic() < deadline, "the daemon did not die"
        time.sleep(0.05)


def coop_processes(user: User) -> dict[int, tuple[int, list[str]]]:
    """Every process of this user's coop (its daemon, zygote, supervisors…), found by the
    COOP_HOME in its environment, as pid -> (parent pid, argv). Nothing else matches: not
    the user's own coop, not another test run's, not another user's."""
    wanted = f"COOP_HOME={user.coop_home}".encode()
    found: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != user.uid or \
                    wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        found[int(entry.name)] = (parent, argv)
    return found
