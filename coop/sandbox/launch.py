"""Starting a sandbox: namespaces, mounts, the inner user namespace, then PID 1.

Process tree (host pids):

    caller (`coop run`, or a session supervisor)
      └─ outer   unshare(user, mnt, pid, uts, ipc[, net]); maps uid 0 -> the user; waits
          └─ init   PID 1 inside: mounts, pivot_root, inner user namespace (the user's own
                    uid), then serves spawn requests (coop.sandbox.init)
              └─ commands   the agent, shells: setsid, own PTY, rlimits, no_new_privs, exec

Mounts are made as root of the outer user namespace; init and the commands then live in
an inner user namespace with no capability over the mount namespace, so no mount can be
made, moved or undone from inside. PTYs are created inside the sandbox's own devpts and
their masters sent to the caller, so no host terminal fd ever enters the sandbox (TIOCSTI,
CVE-2017-5226) and `tty` inside names a real device.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from coop.errors import SandboxError
from coop.proctitle import set_title
from coop.sandbox import syscalls as sc
from coop.sandbox.command import CommandMissing
from coop.sandbox.init import FORWARDED_SIGNALS, Init, exit_code, report, send
from coop.sandbox.plan import SandboxPlan


@dataclass
class Sandbox:
    """A running sandbox as its caller sees it."""

    pid: int
    """Host pid of the outer process: its exit status is the first command's (`coop run`)."""
    init_pid: int
    """Host pid of the sandbox's PID 1."""
    control: socket.socket
    """The seqpacket socket to init; closing it kills the sandbox."""
    netctl: socket.socket | None = None
    """The seqpacket socket to the outer process, which makes sockets in the sandbox's
    network namespace on request (`connect_inside`)."""
    proxy_listener: socket.socket | None = None
    """For `proxy` mode: a listening socket on 127.0.0.1:PROXY_PORT inside the sandbox."""
    pending: list[tuple[dict[str, Any], list[int]]] = field(default_factory=list)

    def connect_inside(self, port: int) -> socket.socket:
        """A TCP connection to 127.0.0.1:`port` inside the sandbox's network namespace."""
        if self.netctl is None:
            raise OSError("this sandbox has no network namespace of its own")
        send(self.netctl, {"op": "connect", "port": port})
        data, fds, _, _ = socket.recv_fds(self.netctl, 4096, 1)
        reply = json.loads(data) if data else {"error": "the sandbox is gone"}
        if not fds:
            raise OSError(reply.get("error", "cannot connect inside the sandbox"))
        return socket.socket(fileno=fds[0])

    def request(self, message: dict[str, Any]) -> None:
        send(self.control, message)

    def receive(self) -> tuple[dict[str, Any], list[int]]:
        """The next message from init (blocking)."""
        if self.pending:
            return self.pending.pop(0)
        data, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 4)
        if not data:
            return {"closed": True}, []
        return json.loads(data), fds

    def spawn_result(self, ident: int = 0) -> tuple[int, int | None]:
        """Wait for the answer to spawn request `ident`: (pid inside, PTY master or None)."""
        while True:
            message, fds = self.receive()
            if message.get("spawned") == ident:
                return int(message["pid"]), (fds[0] if fds else None)
            if message.get("spawn_error") == ident:
                if message.get("code"):
                    raise CommandMissing(str(message.get("command", "")), int(message["code"]),
                                         str(message.get("found", "")))
                raise SandboxError(f"cannot start the command: {message['error']}.")
            if message.get("closed"):
                raise SandboxError("the sandbox exited while starting a command.")
            self.pending.append((message, fds))


def first_command(plan: SandboxPlan) -> dict[str, Any]:
    return {"id": 0, "argv": plan.argv, "env": plan.env, "cwd": plan.cwd,
            "tty": list(plan.tty_size) if plan.tty_size else None}


def launch(plan: SandboxPlan, stdio: tuple[int, int, int] = (0, 1, 2),
           start_first: bool = True, exit_with_first: bool = True) -> Sandbox:
    """Start the sandbox described by `plan`; returns once init is ready (and, with
    `start_first`, once `plan.argv` has been spawned as command id 0).

    Raises `SandboxError` (never runs the command unsandboxed) when any step fails.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    net_parent, net_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    caller = os.getpid()
    pid = os.fork()
    if pid == 0:  # outer
        parent_sock.close()
        net_parent.close()
        _outer(plan, child_sock, net_child, stdio, caller,
               first_command(plan) if start_first else None, exit_with_first)
    child_sock.close()
    net_child.close()
    try:
        sandbox = _await_ready(parent_sock, pid, start_first)
    except BaseException:
        parent_sock.close()
        net_parent.close()
        raise
    sandbox.netctl = net_parent
    return sandbox


def _await_ready(sock: socket.socket, pid: int, start_first: bool) -> Sandbox:
    sandbox = Sandbox(pid, -1, sock)
    ready = False
    while True:
        message, fds = sandbox.receive()
        if message.get("closed"):
            _, status = os.waitpid(pid, 0)
            raise SandboxError(f"the sandbox exited during set-up (status {exit_code(status)}).")
        if "error" in message and "spawn_error" not in message:  # the set-up failed
            os.waitpid(pid, 0)
            raise SandboxError(f"cannot build the sandbox: {message['error']}.",
                               _doctor_hint())
        if "pid" in message and "spawned" not in message:
            sandbox.init_pid = message["pid"]
            if fds:
                sandbox.proxy_listener = socket.socket(fileno=fds[0])
        ready = ready or bool(message.get("ready"))
        if "spawned" in message or "spawn_error" in message:
            sandbox.pending.append((message, fds))
        if ready and (not start_first or sandbox.pending):
            return sandbox


def _doctor_hint() -> str:
    """The doctor's findings, so a failed sandbox says how to fix the machine."""
    from coop.sandbox.doctor import failures_text, run_checks

    found = failures_text(run_checks(live=False))
    return found or "Run `coop doctor` to check what this machine is missing."


def _outer(plan: SandboxPlan, sock: socket.socket, netctl: socket.socket,
           stdio: tuple[int, int, int], caller: int, first: dict[str, Any] | None,
           exit_with_first: bool) -> None:
    """The first child: create the namespaces, fork init, then serve `netctl` (sockets
    made inside the network namespace) until init exits."""
    code = 1
    set_title("coop-sandbox", plan.name)
    try:
        os.setpgid(0, 0)  # terminal signals reach the caller only, which forwards them
        if plan.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != caller:
                os._exit(1)
        for target, fd in enumerate(stdio):
            if fd != target:
                os.dup2(fd, target, inheritable=True)
        _close_other_fds(keep={0, 1, 2, sock.fileno(), netctl.fileno()})
        flags = (sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWUTS
                 | sc.CLONE_NEWIPC)
        if plan.network != "host":
            flags |= sc.CLONE_NEWNET
        host_uid, host_gid = os.getuid(), os.getgid()  # after unshare they read as 65534
        try:
            sc.unshare(flags)
        except OSError as exc:
            raise OSError(exc.errno, "cannot create namespaces: "
                                     f"{os.strerror(exc.errno or 0)}") from None
        sc.map_ids(0, host_uid, 0, host_gid)
        listener = None
        if plan.network != "host":
            from coop.sandbox.netns import loopback_up

            loopback_up()
            if plan.proxy_port:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", plan.proxy_port))
                listener.listen(512)
        init = os.fork()
        if init == 0:
            netctl.close()
            if listener is not None:
                listener.close()
            _init(plan, sock, first, exit_with_first)
        send(sock, {"pid": init}, [listener.fileno()] if listener is not None else None)
        if listener is not None:
            listener.close()
        sock.close()
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, lambda s, _f: _kill(init, s))
        code = _serve_netctl(netctl, init)
    except BaseException as exc:
        report(sock, exc)
    finally:
        os._exit(code)


def _serve_netctl(netctl: socket.socket, init: int) -> int:
    """Make connected sockets inside the network namespace (port forwards) until init
    exits; returns init's exit code."""
    import selectors

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(wake_r, selectors.EVENT_READ)
    sel.register(netctl, selectors.EVENT_READ)
    while True:
        pid, status = os.waitpid(init, os.WNOHANG)
        if pid:
            return exit_code(status)
        for key, _ in sel.select():
            if key.fileobj is netctl:
                try:
                    data = netctl.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(netctl)  # the caller is gone; PDEATHSIG ends us
                    continue
                _connect_for(netctl, json.loads(data))
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)


def _connect_for(netctl: socket.socket, request: dict[str, Any]) -> None:
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(("127.0.0.1", int(request.get("port", 0))))
        conn.settimeout(None)
        send(netctl, {"ok": True}, [conn.fileno()])
    except (OSError, ValueError) as exc:
        send(netctl, {"error": f"nothing listens on port {request.get('port')} inside the "
                               f"sandbox ({exc})"})
    finally:
        conn.close()


def _close_other_fds(keep: set[int]) -> None:
    """Nothing of the caller's (client sockets, pipes, the daemon's listener) may leak in."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _init(plan: SandboxPlan, sock: socket.socket, first: dict[str, Any] | None,
          exit_with_first: bool) -> None:
    """PID 1 of the sandbox: finish the set-up, then serve (coop.sandbox.init)."""
    set_title("coop-init", plan.name)  # what `ps` inside shows, not a host path
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        for op in plan.ops:
            try:
                op.apply(plan.stage)
            except OSError as exc:
                reason = os.strerror(exc.errno or 0)
                raise OSError(exc.errno, f"{op.describe()}: {reason}") from None
        sc.sethostname(plan.name)
        os.chdir(plan.stage)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
        # From here on: the user's own uid, no capabilities over any mount.
        sc.unshare(sc.CLONE_NEWUSER)
        sc.map_ids(plan.identity.uid, 0, plan.identity.gid, 0)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
    except BaseException as exc:
        report(sock, exc)
        os._exit(1)
    Init(sock, plan.limits, exit_with_first).serve(first)
