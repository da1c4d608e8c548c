"""PID 1 of a sandbox: finishes the set-up, then serves spawn requests and reaps.

After the mounts (made as root of the outer user namespace) and pivot_root, init enters
the inner user namespace as the user's own uid and becomes a tiny exec server on the
control socket it shares with its caller (`coop run` or the session supervisor):

    caller -> init   {"op": "spawn", "id", "argv", "env", "cwd", "tty": [rows, cols] | null}
                     {"op": "signal", "id", "signal"}        {"op": "shutdown"}
    init -> caller   {"ready": true}   {"spawned": id, "pid"} (+ the PTY master, SCM_RIGHTS)
                     {"spawn_error": id, "error", "code"?, "command"?, "found"?}
                     {"exited": id, "code"}   {"error", "errno"}

A command that exec would not find (or could not run) is refused before anything is
forked: `spawn_error` with `code` 127 (or 126), as a shell would exit, so the caller can
tell "not installed" from a command that ran and failed.

Every process it spawns lives in the same namespaces, so a shell sees the agent's files
and processes. Init reaps every orphan, so no zombie survives. With `exit_with_first`
(`coop run`) it exits with the first command's status; otherwise it stays until
`shutdown` (or SIGTERM), then terminates what is left. When the caller goes away (the
socket closes) it kills everything: a sandbox never outlives its owner.
"""

from __future__ import annotations

import errno as errnos
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import termios
from typing import Any

from coop.sandbox import syscalls as sc
from coop.sandbox.command import locate, problem

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)
_RLIMITS = {"pids": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE,
            "memory_mb": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU}
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def exit_code(status: int) -> int:
    """A wait status as a shell would report it (128+N for signal N)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def open_pty(size: tuple[int, int]) -> tuple[int, int]:
    """A PTY pair from the devpts mounted at /dev/pts (the sandbox's own instance)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    rows, cols = size
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def exec_command(argv: list[str], env: dict[str, str], cwd: str, limits: dict[str, int],
                 slave: int | None) -> None:
    """In the forked child: session, terminal, limits, privileges, then exec. Never returns."""
    try:
        os.setsid()
        if slave is not None:
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):
                os.dup2(slave, target)
        os.closerange(3, 1 << 16)
        for key, value in limits.items():
            which = _RLIMITS[key]
            wanted = value * 1024 * 1024 if key == "memory_mb" else value
            _, hard = resource.getrlimit(which)
            limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(which, (limit, limit))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, *FORWARDED_SIGNALS):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        sc.drop_all_capabilities()
        os.chdir(cwd)
    except BaseException as exc:
        os.write(2, f"coop: cannot start the command: {exc}\n".encode())
        os._exit(126)
    name = argv[0]
    try:
        os.execvpe(name, argv, env)
    except FileNotFoundError:
        os.write(2, f"coop: {name}: command not found in the sandbox "
                    f"(PATH={env.get('PATH', '')})\n".encode())
        os._exit(127)
    except OSError as exc:
        os.write(2, f"coop: {name}: {exc.strerror}\n".encode())
        os._exit(126)


class Init:
    """The exec server and reaper."""

    def __init__(self, sock: socket.socket, limits: dict[str, int], exit_with_first: bool):
        self.sock = sock
        self.limits = limits
        self.exit_with_first = exit_with_first
        self.children: dict[int, int] = {}  # pid -> spawn id
        self.first: int | None = None
        self.shutting_down = False

    def serve(self, first: dict[str, Any] | None) -> None:
        os.set_blocking(self.sock.fileno(), True)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, *FORWARDED_SIGNALS):
            signal.signal(sig, lambda *_: None)
        send(self.sock, {"ready": True})
        if first is not None:
            self.spawn(first)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "control")
        sel.register(wake_r, selectors.EVENT_READ, "signals")
        while True:
            for key, _ in sel.select():
                if key.data == "control":
                    self.on_control(sel)
                else:
                    self.on_signals(wake_r)
            self.reap()

    def on_control(self, sel: selectors.BaseSelector) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 4)
        except OSError:
            data, fds = b"", []
        for fd in fds:
            os.close(fd)
        if not data:  # the owner is gone: nothing may outlive it
            self.kill_all(signal.SIGKILL)
            os._exit(137)
        try:
            message = json.loads(data)
        except ValueError:
            return
        op = message.get("op")
        if op == "spawn":
            self.spawn(message)
        elif op == "signal":
            for pid, ident in self.children.items():
                if ident == message.get("id"):
                    _kill(pid, int(message.get("signal", signal.SIGTERM)))
        elif op == "shutdown":
            self.shutdown()

    def spawn(self, request: dict[str, Any]) -> None:
        ident = request.get("id", 0)
        name = str(request["argv"][0]) if request["argv"] else ""
        code, found = locate(name, str(request["env"].get("PATH", "")), str(request["cwd"]))
        if code:
            send(self.sock, {"spawn_error": ident, "code": code, "command": name,
                             "found": found, "error": problem(name, code, found)})
            return
        try:
            tty = request.get("tty")
            master, slave = open_pty((int(tty[0]), int(tty[1]))) if tty else (None, None)
            pid = os.fork()
        except OSError as exc:
            send(self.sock, {"spawn_error": ident, "error": exc.strerror or str(exc)})
            return
        if pid == 0:
            self.sock.close()
            exec_command(list(request["argv"]), dict(request["env"]), str(request["cwd"]),
                         self.limits, slave)
        self.children[pid] = ident
        if self.first is None:
            self.first = pid
        if slave is not None:
            os.close(slave)
        send(self.sock, {"spawned": ident, "pid": pid},
             [master] if master is not None else None)
        if master is not None:
            os.close(master)

    def on_signals(self, wake_r: int) -> None:
        try:
            signals = os.read(wake_r, 512)
        except BlockingIOError:
            return
        for signum in signals:
            if signum == signal.SIGCHLD:
                continue
            if self.exit_with_first:
                if self.first is not None:
                    _kill(self.first, signum)
            elif signum == signal.SIGTERM:
                self.shutdown()
            else:
                self.kill_all(signum)

    def shutdown(self) -> None:
        self.shutting_down = True
        self.kill_all(signal.SIGTERM)
        if not self.children:
            os._exit(0)

    def kill_all(self, sig: int) -> None:
        for pid in list(self.children):
            _kill(pid, sig)
            if sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGHUP):
                try:
                    os.killpg(pid, sig)  # the command's own session and its jobs
                except OSError:
                    pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = self.children.pop(pid, None)
            if ident is None:
                continue  # an orphan, reaped
            code = exit_code(status)
            if self.exit_with_first and pid == self.first:
                os._exit(code)
            try:
                send(self.sock, {"exited": ident, "code": code})
            except OSError:
                pass
            if self.shutting_down and not self.children:
                os._exit(0)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def report(sock: socket.socket, exc: BaseException) -> None:
    """Tell the caller why set-up failed."""
    try:
        errno = exc.errno if isinstance(exc, OSError) else 0
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
            text = f"{text} ({exc.filename})"
        send(sock, {"error": text, "errno": errno or errnos.EIO})
    except OSError:
        pass
