"""The per-session supervisor: the process that owns one session (like containerd-shim).

It is the sandbox's parent, holds every PTY master, the output rings and the screens, and
serves clients on `RUN/sessions/NAME.sock`. It does not depend on the daemon: when the
daemon dies, attached clients keep streaming (they were handed to the supervisor), and the
next daemon re-adopts the session by connecting to that socket. Only killing the session
(or the supervisor itself) ends the sandbox.

Requests arrive either on the daemon's channel (`{"id": N, "cmd": ...}`, replies carry the
same id, events flow back unasked) or as a client connection the daemon handed over with
its first request (`handoff`): attach, shell, logs, snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import stat
import time
from collections import deque
from pathlib import Path
from typing import Any

from coop.config.coopfile import load_config
from coop.daemon.pty import Pty
from coop.errors import CoopError
from coop.ipc.conn import Conn, peer_uid
from coop.ipc.framing import (
    CONTROL,
    PROTOCOL_VERSION,
    decode_json,
    encode_control,
    encode_data,
    error,
)
from coop.net.forward import PortForward
from coop.net.policy import AllowList
from coop.net.proxy import Denial, ForwardProxy
from coop.paths import CoopPaths, coop_paths, ensure_private_dir
from coop.sandbox.bases import resolve_config_base
from coop.sandbox.command import NOT_EXECUTABLE, NOT_FOUND, explain
from coop.sandbox.identity import current_identity
from coop.sandbox.launch import Sandbox, first_command, launch
from coop.sandbox.mounts import Bind
from coop.sandbox.plan import build_plan, prepare, remove_tree

log = logging.getLogger("coop.supervisor")

CRASH_WINDOW = 5.0
CRASH_LIMIT = 3
KEPT_STATES = ("crashed", "not-found", "cannot-run")
"""The agent is finished and the session stays (with nothing running) so that `coop ls`,
`coop logs` and `coop restart` can still reach it."""
KILL_GRACE = 5.0
HOST_RE = re.compile(r"[A-Za-z0-9._:-]{1,253}")
"""A host name or an IP address, as `coop allow` and the page may approve one."""
NOTIFY_SCRIPT = """#!/bin/sh
# coop-notify [MESSAGE]: tell coop this session is waiting for you (for agents' hooks).
printf '%s\\n' "${*:-waiting}" > /run/coop/notify
"""


def session_socket(paths: CoopPaths, name: str) -> Path:
    return paths.run_dir / "sessions" / f"{name}.sock"


def session_runtime(paths: CoopPaths, name: str) -> Path:
    return paths.run_dir / "sessions" / name


def session_data(paths: CoopPaths, name: str) -> Path:
    return paths.sessions_dir / name


class Supervisor:
    """Everything about one running session."""

    def __init__(self, request: dict[str, Any], paths: CoopPaths) -> None:
        self.request = request
        self.paths = paths
        self.name: str = request["name"]
        self.workspace = ""
        self.created = time.time()
        self.state = "running"
        self.ptys: dict[int, Pty] = {}
        self.next_pty = 1
        self.sandbox: Sandbox | None = None
        self.daemons: set[Conn] = set()
        self.env: dict[str, str] = {}
        self.cwd = "/workspace"
        self.shell: list[str] = ["/bin/sh"]
        self.restart_policy = "on-failure"
        self.restart_delay = 1.0
        self.done: asyncio.Future[None] | None = None
        self._spawns: dict[int, tuple[list[str], str]] = {}
        self._ending = False
        self._waiter: asyncio.Task[None] | None = None
        self._restart_requested = False
        self.agent_runs = 0
        """Times the agent was exec'd since the session started (or `coop restart`)."""
        self.agent_reason = ""
        """Why the agent is not running and will not be restarted ("" otherwise)."""
        self.image = "host"
        self.network_mode = "proxy"
        self.input_filter: dict[str, Any] = {}
        self.network_allow: list[str] = []
        self.ports: list[str] = []
        self.denials: deque[Denial] = deque(maxlen=1000)
        self.proxy: ForwardProxy | None = None
        self.approved: list[str] = []
        """Hosts the user let through while the session runs (`coop allow`, the page)."""
        self.network_followers: set[Conn] = set()
        self.forwards: list[PortForward] = []

    # -- set-up (blocking, before the loop runs) --------------------------------------
    def setup(self) -> None:
        req = self.request
        config = load_config(self.paths, Path(req["workspace"]),
                             Path(req["coopfile"]) if req.get("coopfile") else None,
                             req.get("overrides"))
        self.workspace = str(config.workspace)
        self.shell = config.shell
        self.restart_policy = config.agent_restart
        self.restart_delay = config.agent_restart_delay_ms / 1000
        self.image = config.image
        self.network_mode = config.network_mode
        self.input_filter = {"ctrl_c": config.ctrl_c,
                             "ctrl_c_debounce_ms": config.ctrl_c_debounce_ms,
                             "block": list(config.block)}
        self.network_allow = list(config.network_allow)
        self.ports = list(config.ports)
        runtime = ensure_private_dir(session_runtime(self.paths, self.name))
        notify = runtime / "notify"
        if not notify.exists():
            os.mkfifo(notify, 0o600)
        script = runtime / "coop-notify"
        script.write_text(NOTIFY_SCRIPT)
        os.chmod(script, 0o755)
        ident = current_identity(req.get("identity_env") or os.environ)
        size = tuple(req.get("size") or (24, 80))
        layout = resolve_config_base(config, self.paths, pull=False, build=False)
        plan = build_plan(config, ident, self.paths, name=self.name,
                          argv=list(req.get("argv") or config.agent_command),
                          env=dict(req.get("env") or {}),
                          upper_root=session_data(self.paths, self.name),
                          stage=runtime / "root",
                          layout=layout,
                          tty_size=(int(size[0]), int(size[1])),
                          term=req.get("term") or "xterm-256color",
                          lang=req.get("lang") or "C.UTF-8")
        plan.ops.insert(self._after_run_tmpfs(plan.ops),
                        Bind(str(notify), "/run/coop/notify", is_dir=False))
        plan.ops.insert(self._after_run_tmpfs(plan.ops) + 1,
                        Bind(str(script), "/run/coop/bin/coop-notify", read_only=True,
                             is_dir=False))
        plan.env["PATH"] = plan.env["PATH"] + ":/run/coop/bin"
        prepare(plan)
        self.env = plan.env
        self.cwd = plan.cwd
        (session_data(self.paths, self.name) / "meta.json").write_text(json.dumps({
            "name": self.name, "workspace": self.workspace, "created": self.created,
            "argv": plan.argv,
            # Built layers this session stacks: `coop system prune` leaves them alone.
            "layers": [str(Path(fs).parent) for fs in layout.layers]}))
        devnull = os.open(os.devnull, os.O_RDWR)
        # The agent is spawned before set-up reports success, so `coop -d` returns once
        # it runs (SPEC: session start is measured until the agent is exec'd).
        veth_mode = config.network_mode == "veth"
        self.sandbox = launch(plan, (devnull, devnull, devnull), start_first=not veth_mode,
                              exit_with_first=False)
        os.close(devnull)
        if veth_mode:  # wire the network before the agent starts
            from coop.net import veth

            veth.setup(self.sandbox.pid)
            self.sandbox.request({"op": "spawn", **first_command(plan)})
        self._notify_fd = os.open(notify, os.O_RDONLY | os.O_NONBLOCK)
        self._notify_keep = os.open(notify, os.O_WRONLY | os.O_NONBLOCK)  # never EOF
        self._first = (plan.argv, plan.tty_size or (24, 80))

    @staticmethod
    def _after_run_tmpfs(ops: list[Any]) -> int:
        for index, op in enumerate(ops):
            if getattr(op, "dst", None) == "/run":
                return index + 1
        return len(ops)

    # -- the loop ---------------------------------------------------------------------
    async def main(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        assert self.sandbox is not None
        self.sandbox.control.setblocking(False)
        loop.add_reader(self.sandbox.control.fileno(), self._from_init)
        loop.add_reader(self._notify_fd, self._from_notify)
        listener.setblocking(False)
        loop.add_reader(listener.fileno(), self._accept, listener)
        loop.add_signal_handler(signal.SIGTERM, lambda: self.kill(force=False))
        loop.add_signal_handler(signal.SIGINT, lambda: self.kill(force=False))
        argv, size = self._first
        self.ptys[0] = Pty(0, "agent", argv, size, self.emit)
        await self._start_network()
        for message, fds in self.sandbox.pending:  # the agent's spawn, made during set-up
            self._on_init_message(message, fds)
        self.sandbox.pending.clear()
        ticker = loop.create_task(self._tick())
        try:
            await self.done
        finally:
            ticker.cancel()

    async def _start_network(self) -> None:
        assert self.sandbox is not None
        if self.sandbox.proxy_listener is not None:
            proxy = ForwardProxy(AllowList(self.network_allow), on_denial=self._on_denial,
                                 session=self.name)
            await proxy.start(self.sandbox.proxy_listener)
            self.proxy = proxy
        for entry in self.ports:
            host_port, inside_port = (int(p) for p in entry.split(":"))
            if self.network_mode == "host":
                break  # the sandbox shares the host's network: nothing to forward
            forward = PortForward(host_port, inside_port, self.sandbox.connect_inside)
            try:
                await forward.start()
            except OSError as exc:
                self.ptys[0].notice(f"cannot forward 127.0.0.1:{host_port} to the sandbox's "
                                    f"port {inside_port}: {exc.strerror or exc}")
                continue
            self.forwards.append(forward)

    def _on_denial(self, denial: Denial) -> None:
        self.denials.append(denial)
        self.emit({"event": "network_denied", "host": denial.host, "port": denial.port,
                   "reason": denial.reason})
        line = encode_data((denial.line() + "\n").encode())
        for conn in self.network_followers:
            conn.send(line)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.time()
            for pty in list(self.ptys.values()):
                pty.tick(now)

    def emit(self, event: dict[str, Any]) -> None:
        event.setdefault("session", self.name)
        event.setdefault("time", time.time())
        for conn in self.daemons:
            conn.reply(event)

    # -- init -------------------------------------------------------------------------
    def _spawn_pty(self, ident: int, kind: str, argv: list[str], size: tuple[int, int]) -> Pty:
        pty = self.ptys.get(ident)
        if pty is None:
            pty = Pty(ident, kind, argv, size, self.emit)
            self.ptys[ident] = pty
        assert self.sandbox is not None
        self._spawns[ident] = (argv, kind)
        pty.spawning = True
        self.sandbox.request({"op": "spawn", "id": ident, "argv": argv, "env": self.env,
                              "cwd": self.cwd, "tty": [pty.rows, pty.cols]})
        return pty

    def _from_init(self) -> None:
        assert self.sandbox is not None
        try:
            data, fds, _, _ = socket.recv_fds(self.sandbox.control, 1 << 20, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            self._sandbox_gone()
            return
        self._on_init_message(json.loads(data), fds)

    def _on_init_message(self, message: dict[str, Any], fds: list[int]) -> None:
        if "spawned" in message:
            pty = self.ptys[message["spawned"]]
            pty.started(fds[0])
            if pty.kind == "agent":
                self.agent_runs += 1
            self.emit({"event": "pty_added", "pty": pty.ident, "kind": pty.kind})
        elif "spawn_error" in message:
            for fd in fds:
                os.close(fd)
            pty = self.ptys[message["spawn_error"]]
            code = int(message.get("code") or NOT_EXECUTABLE)
            if message.get("code"):  # init looked it up: not installed, or not executable
                lines = explain(pty.argv[0], code, self.env.get("PATH", ""), self.image,
                                str(message.get("found") or ""))
            else:
                lines = [f"cannot start {pty.argv[0]}: {message['error']}"]
            pty.notice("\r\n       ".join(lines))
            pty.exited(code)
            self.emit({"event": "pty_exited", "pty": pty.ident, "code": code})
            self._after_exit(pty, lines[0].rstrip("."))
        elif "exited" in message:
            pty = self.ptys[message["exited"]]
            pty.exited(int(message["code"]))
            self.emit({"event": "pty_exited", "pty": pty.ident, "code": pty.exit_code})
            self._after_exit(pty)

    def _after_exit(self, pty: Pty, problem: str = "") -> None:
        """Restart the agent per `agent.restart`, or say why not; end the session when
        nothing is left running (unless the agent failed: see KEPT_STATES)."""
        if self._ending:
            return
        if pty.kind == "agent":
            quick = time.time() - pty.started_at < CRASH_WINDOW
            pty.quick_exits = pty.quick_exits + 1 if quick else 0
            code = pty.exit_code or 0
            requested = self._restart_requested
            wanted = requested or self.restart_policy == "always" or (
                self.restart_policy == "on-failure" and code != 0)
            self._restart_requested = False
            # Found missing before exec, or 127/126 at once from its first run: a restart
            # would fail the same way (and look like a crash loop). A 127 after real work
            # is an ordinary failure.
            if code in (NOT_FOUND, NOT_EXECUTABLE) and not requested and (
                    problem or (self.agent_runs <= 1 and quick)):
                self._cannot_start(pty, code, problem)
                return
            if wanted and pty.quick_exits >= CRASH_LIMIT:
                reason = (f"the agent exited {CRASH_LIMIT} times within {CRASH_WINDOW:.0f} s "
                          "of starting; not restarting it. Fix it, then `coop restart`.")
                pty.notice(reason)
                self.emit({"event": "crash_loop", "pty": pty.ident})
                self._agent_finished(pty, "crashed", reason)
                return
            if wanted:
                pty.notice(f"the agent exited with code {code}; restarting it")
                pty.broadcast({"type": "pty_restarting", "pty": pty.ident,
                               "delay_ms": int(self.restart_delay * 1000)})
                self.emit({"event": "pty_restarting", "pty": pty.ident})
                asyncio.get_running_loop().call_later(self.restart_delay, self._restart, pty)
                return
            why = "never" if self.restart_policy == "never" else \
                f"{self.restart_policy}, and it did not fail"
            reason = f"the agent exited with code {code}; not restarting it (agent.restart: {why})"
            if any(p.alive for p in self.ptys.values()):
                self._agent_finished(pty, "exited", f"{reason}. Its shells keep running; "
                                                    "`coop restart` starts it again")
                return
            self.end(f"{reason}; the session ended")
            return
        self._detach_all(pty, f"shell {pty.ident}: {problem}" if problem
                         else f"shell {pty.ident} exited")
        if not any(p.alive for p in self.ptys.values()) and self.state not in KEPT_STATES:
            self.end(f"the session ended (exit code {pty.exit_code})")

    def _cannot_start(self, pty: Pty, code: int, problem: str) -> None:
        """The agent is not installed (127) or cannot be run (126): say so, once."""
        name = pty.argv[0] if pty.argv else "the agent"
        if not problem:  # it was exec'd: what it ran, or its interpreter, is missing
            what = "a command it runs was not found" if code == NOT_FOUND else \
                "a file it runs is not executable"
            problem = f"{name} exited with code {code} the first time it ran: {what}"
            pty.notice(f"{problem} (its own message is above); not restarting it.")
        log.warning("session %s: %s", self.name, problem)
        fix = "install it" if code == NOT_FOUND else "fix that"
        what = "the agent did not start" if self.agent_runs == 0 else "the agent stopped at once"
        self._agent_finished(pty, "not-found" if code == NOT_FOUND else "cannot-run",
                             f"{what}: {problem}. Not restarting it; {fix}, "
                             "then run coop again (or `coop restart`)")

    def _agent_finished(self, pty: Pty, state: str, reason: str) -> None:
        """The agent will not run again unless asked: local terminals watching it are told
        why (and its exit code) instead of staying attached to a dead PTY. The TUI and
        the page keep their view of the last screen, which they mark as exited."""
        self.state = state
        self.agent_reason = reason
        self.emit({"event": "agent_stopped", "pty": pty.ident, "state": state,
                   "reason": reason, "code": pty.exit_code})
        for conn in list(pty.clients):
            if conn.state.get("kind", "local") == "local":
                self._detach_finished(conn, pty)

    def _detach_finished(self, conn: Conn, pty: Pty) -> None:
        conn.send(encode_control({"type": "detached", "reason": self.agent_reason,
                                  "code": pty.exit_code}))
        self._leave(pty, conn)
        conn.close(flush=True)

    def _restart(self, pty: Pty) -> None:
        if not self._ending and not pty.alive:
            self._spawn_pty(pty.ident, pty.kind, pty.argv, (pty.rows, pty.cols))

    def _sandbox_gone(self) -> None:
        if not self._ending:
            log.warning("session %s: the sandbox died", self.name)
            self.end("the sandbox died")

    def _from_notify(self) -> None:
        try:
            data = os.read(self._notify_fd, 4096)
        except BlockingIOError:
            return
        agent = self.ptys.get(0)
        if agent is None or not data:
            return
        message = data.decode("utf-8", "replace").strip().splitlines()[-1:] or ["waiting"]
        agent.activity.on_notify(message[0][:200])
        agent.tick(time.time())

    # -- clients ----------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        if peer_uid(sock) != os.getuid():
            sock.close()
            return
        conn = Conn(sock, self._on_handshake, self._on_close, accept_fds=True)
        conn.start()

    def _on_handshake(self, conn: Conn, kind: int, body: bytes) -> None:
        message = decode_json(body)
        if message.get("version") != PROTOCOL_VERSION:
            conn.reply(error("VERSION_MISMATCH", f"this supervisor speaks version "
                                                 f"{PROTOCOL_VERSION}"))
            conn.close(flush=True)
            return
        conn.reply({"version": PROTOCOL_VERSION, "ok": True})
        conn.on_frame = self._on_daemon_frame
        self.daemons.add(conn)

    def _on_close(self, conn: Conn) -> None:
        self.daemons.discard(conn)
        self.network_followers.discard(conn)
        for pty in self.ptys.values():
            self._leave(pty, conn)
            pty.followers.discard(conn)

    def _leave(self, pty: Pty, conn: Conn) -> None:
        """A client is no longer watching `pty`; everyone's client counts say so at once
        (a detach as much as a hang-up: the TUI's list refreshes on this event)."""
        if conn in pty.clients:
            pty.clients.discard(conn)
            self.emit({"event": "clients", "pty": pty.ident, "clients": pty.client_counts()})

    def _on_daemon_frame(self, conn: Conn, kind: int, body: bytes) -> None:
        message = decode_json(body)
        ident = message.get("id")
        cmd = message.get("cmd")
        if cmd == "handoff":
            if not conn.fds:
                conn.reply({"id": ident, **error("INVALID_COMMAND", "handoff without a fd")})
                return
            fd = conn.fds.popleft()
            client = Conn(socket.socket(fileno=fd), self._on_client_request, self._on_close,
                          on_overflow=self._on_overflow)
            client.start()
            self._on_client_request(client, CONTROL, json.dumps(message["request"]).encode())
            return
        try:
            reply = self.handle(message)
        except CoopError as exc:
            reply = error("INVALID_COMMAND", exc.render())
        conn.reply({"id": ident, **reply})

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Requests that need no stream: info, kill, restart, resize, new_pty."""
        cmd = message.get("cmd")
        if cmd == "info":
            return {"ok": True, "session": self.info()}
        if cmd == "kill":
            self.kill(force=bool(message.get("force")))
            return {"ok": True}
        if cmd == "restart":
            return self.restart_agent()
        if cmd == "allow":
            return self.approve(str(message.get("host") or ""))
        if cmd == "new_shell":
            pty = self._shell_pty({"new": True, "size": message.get("size")})
            return pty if isinstance(pty, dict) else {"ok": True, "pty": pty.ident}
        if cmd == "resize":
            pty = self._pty(message)
            if isinstance(pty, dict):
                return pty
            pty.resize(int(message["rows"]), int(message["cols"]))
            return {"ok": True}
        return error("INVALID_COMMAND", f"unknown command {cmd!r}")

    def _pty(self, message: dict[str, Any]) -> Pty | dict[str, Any]:
        try:
            ident = int(message.get("pty") or 0)
        except (TypeError, ValueError):
            return error("INVALID_COMMAND", "`pty` must be a number")
        pty = self.ptys.get(ident)
        if pty is None:
            return error("PTY_NOT_FOUND", f"session {self.name} has no PTY {ident}")
        return pty

    def _on_client_request(self, conn: Conn, kind: int, body: bytes) -> None:
        try:
            message = decode_json(body)
        except Exception as exc:
            conn.reply(error("INVALID_COMMAND", str(exc)))
            conn.close(flush=True)
            return
        cmd = message.get("cmd")
        if cmd == "shell":
            target = self._shell_pty(message)
        elif cmd == "logs" and message.get("network"):
            self._network_logs(conn, message)
            return
        elif cmd in ("attach", "logs", "snapshot"):
            target = self._pty(message)
        else:
            conn.reply(self.handle(message))
            conn.close(flush=True)
            return
        if isinstance(target, dict):
            conn.reply(target)
            conn.close(flush=True)
            return
        if cmd == "snapshot":
            conn.reply(self._snapshot(target, str(message.get("format", "text"))))
            conn.close(flush=True)
        elif cmd == "logs":
            self._logs(conn, target, message)
        else:
            self._attach(conn, target, message)

    def _shell_pty(self, message: dict[str, Any]) -> Pty | dict[str, Any]:
        argv = message.get("argv")
        if not argv and not message.get("new"):
            for pty in self.ptys.values():
                if pty.kind == "shell" and pty.alive:
                    return pty
        if self.sandbox is None or self._ending:
            return error("SESSION_NOT_FOUND", f"session {self.name} is ending")
        size = message.get("size") or [24, 80]
        ident = self.next_pty
        self.next_pty += 1
        command = list(argv) if argv else list(self.shell)
        return self._spawn_pty(ident, "shell", command, (int(size[0]), int(size[1])))

    def _attach(self, conn: Conn, pty: Pty, message: dict[str, Any]) -> None:
        conn.state.update(kind=str(message.get("kind", "local")), pty=pty.ident)
        size = message.get("size")
        conn.reply({"ok": True, "session": self.name, "pty": pty.ident, "kind": pty.kind})
        conn.set_stream(True)
        conn.on_frame = self._on_stream_frame
        if size:
            conn.state["size"] = (int(size[0]), int(size[1]))
            pty.resize(*conn.state["size"])
        pty.join(conn)
        self.emit({"event": "clients", "pty": pty.ident, "clients": pty.client_counts()})
        if pty.kind == "agent" and self.agent_reason and conn.state["kind"] == "local":
            self._detach_finished(conn, pty)  # the last screen, then why it is over
            return
        conn.process()

    def _on_stream_frame(self, conn: Conn, kind: int, body: bytes) -> None:
        pty = self.ptys.get(int(conn.state.get("pty", 0)))
        if pty is None:
            conn.close()
            return
        if kind != CONTROL:
            size = conn.state.get("size")
            if size and size != (pty.rows, pty.cols):
                pty.resize(*size)  # the most recently active client's size wins
            pty.write(body)
            return
        control = decode_json(body)
        what = control.get("type")
        if what == "resize":
            try:
                conn.state["size"] = (int(control["rows"]), int(control["cols"]))
            except (KeyError, TypeError, ValueError):
                conn.send(encode_control({"type": "error", "error": "INVALID_COMMAND",
                                          "message": "resize needs rows and cols"}))
                return
            pty.resize(*conn.state["size"])
        elif what == "follow":  # this client takes whatever size the others set
            conn.state.pop("size", None)
        elif what == "detach":
            conn.send(encode_control({"type": "detached", "reason": "detach"}))
            self._leave(pty, conn)
            conn.close(flush=True)
        else:
            conn.send(encode_control({"type": "error", "error": "INVALID_COMMAND",
                                      "message": f"unknown control {what!r}"}))

    def _on_overflow(self, conn: Conn) -> None:
        pty = self.ptys.get(int(conn.state.get("pty", -1)))
        if pty is not None and conn in pty.clients:
            pty.resync(conn)
        elif pty is not None and conn in pty.followers:
            conn.close()  # `coop logs -f` that does not read: it can reconnect
        else:
            conn.close()

    def _logs(self, conn: Conn, pty: Pty, message: dict[str, Any]) -> None:
        lines = message.get("lines")
        data = pty.ring.tail_lines(int(lines)) if lines is not None else pty.ring.read(0)[1]
        conn.reply({"ok": True, "pty": pty.ident, "session": self.name})
        conn.set_stream(True)
        conn.on_frame = lambda c, k, b: None
        for start in range(0, len(data), 256 * 1024):
            conn.send(encode_data(data[start:start + 256 * 1024]))
        if message.get("follow"):
            conn.state["pty"] = pty.ident
            pty.followers.add(conn)
        else:
            conn.close(flush=True)

    def _network_logs(self, conn: Conn, message: dict[str, Any]) -> None:
        lines = [d.line() + "\n" for d in self.denials]
        if message.get("lines") is not None:
            lines = lines[-int(message["lines"]):] if int(message["lines"]) > 0 else []
        conn.reply({"ok": True, "network": True, "session": self.name})
        conn.set_stream(True)
        conn.on_frame = lambda c, k, b: None
        if lines:
            conn.send(encode_data("".join(lines).encode()))
        if message.get("follow"):
            self.network_followers.add(conn)
        else:
            conn.close(flush=True)

    def _snapshot(self, pty: Pty, fmt: str) -> dict[str, Any]:
        screen = pty.screen
        reply: dict[str, Any] = {"ok": True, "pty": pty.ident, "rows": pty.rows,
                                 "cols": pty.cols, "title": screen.title}
        if fmt == "ansi":
            reply["ansi"] = screen.snapshot().decode("utf-8", "replace")
        elif fmt == "cells":
            reply["cells"] = screen.cells()
        else:
            reply["lines"] = screen.text_lines()
        reply["cursor"] = [screen.screen.cursor.x, screen.screen.cursor.y]
        reply["cursor_hidden"] = bool(screen.screen.cursor.hidden)
        reply["alternate"] = screen.screen.alternate
        return reply

    def _detach_all(self, pty: Pty, reason: str) -> None:
        for conn in list(pty.clients):
            conn.send(encode_control({"type": "detached", "reason": reason}))
            conn.close(flush=True)
        pty.clients.clear()

    # -- life and death ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "workspace": self.workspace, "created": self.created,
                "state": self.state, "supervisor_pid": os.getpid(),
                "agent_runs": self.agent_runs,
                "input_filter": self.input_filter, "network_approved": self.approved,
                **({"reason": self.agent_reason} if self.agent_reason else {}),
                "ptys": [pty.info() for pty in sorted(self.ptys.values(),
                                                      key=lambda p: p.ident)
                         if pty.started_at or pty.exit_code is not None]}

    def approve(self, host: str) -> dict[str, Any]:
        """The user let a host through the proxy for the rest of this session."""
        if self.proxy is None:
            return error("INVALID_COMMAND", f"session {self.name} does not use the proxy "
                                            f"(network: {self.network_mode})")
        if not HOST_RE.fullmatch(host):
            return error("INVALID_COMMAND", f"{host!r} is not a host name or IP address")
        self.proxy.allow.approve(host)
        self.approved.append(host)
        self.emit({"event": "network_approved", "host": host})
        return {"ok": True, "host": host}

    def restart_agent(self) -> dict[str, Any]:
        agent = self.ptys.get(0)
        if agent is None:
            return error("PTY_NOT_FOUND", "this session has no agent")
        agent.quick_exits = 0
        self.agent_runs = 0  # a first start again: a missing command is not retried
        self.agent_reason = ""
        self.state = "running"
        if agent.alive:
            assert self.sandbox is not None
            self._restart_requested = True  # whatever the policy, this exit restarts it
            self.sandbox.request({"op": "signal", "id": 0, "signal": int(signal.SIGTERM)})
        else:
            self._restart(agent)
        return {"ok": True}

    def kill(self, force: bool) -> None:
        """SIGTERM to the sandbox, a grace period, SIGKILL; then clean up and exit."""
        if self._ending:
            return
        self._ending = True
        self.state = "exiting"
        if self.sandbox is not None:
            if force:
                _kill(self.sandbox.pid, signal.SIGKILL)
            else:
                try:
                    self.sandbox.request({"op": "shutdown"})
                except OSError:
                    pass
        loop = asyncio.get_running_loop()
        loop.call_later(0 if force else KILL_GRACE, self._force_kill)
        self._waiter = loop.create_task(self._await_sandbox_exit("killed"))

    def _force_kill(self) -> None:
        if self.sandbox is not None:
            _kill(self.sandbox.pid, signal.SIGKILL)

    async def _await_sandbox_exit(self, reason: str) -> None:
        assert self.sandbox is not None
        while True:
            pid, _ = os.waitpid(self.sandbox.pid, os.WNOHANG)
            if pid:
                break
            await asyncio.sleep(0.02)
        self.finish(reason)

    def end(self, reason: str) -> None:
        """Every PTY is gone: stop the sandbox, then finish."""
        if self._ending:
            return
        self._ending = True
        if self.sandbox is not None:
            try:
                self.sandbox.request({"op": "shutdown"})
            except OSError:
                pass
        asyncio.get_running_loop().call_later(KILL_GRACE, self._force_kill)
        self._waiter = asyncio.get_running_loop().create_task(self._await_sandbox_exit(reason))

    def finish(self, reason: str) -> None:
        """Tell everyone, remove the upper dir and runtime files, and exit the loop."""
        for pty in self.ptys.values():
            for conn in list(pty.clients) + list(pty.followers):
                conn.send(encode_control({"type": "detached", "reason": reason}))
                conn.close(flush=True)
        # Clean up before telling the daemon we are gone: `coop kill` returns when we are.
        remove_tree(session_data(self.paths, self.name))
        remove_tree(session_runtime(self.paths, self.name))
        try:
            session_socket(self.paths, self.name).unlink()
        except FileNotFoundError:
            pass
        self.emit({"event": "session_exited", "reason": reason})
        for conn in list(self.daemons):
            conn.close(flush=True)
        log.info("session %s ended: %s", self.name, reason)
        if self.done is not None and not self.done.done():
            asyncio.get_running_loop().call_later(0.2, self.done.set_result, None)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def listen(path: Path) -> socket.socket:
    """A 0600 unix socket at `path`, replacing a stale one."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def run_supervisor(request: dict[str, Any], status_fd: int) -> None:
    """Entry of the supervisor process (already detached); reports set-up on `status_fd`."""
    from coop.limits import raise_nofile

    raise_nofile()
    paths = coop_paths()
    sup = Supervisor(request, paths)
    try:
        sup.setup()
        ensure_private_dir(paths.run_dir / "sessions")
        listener = listen(session_socket(paths, sup.name))
    except CoopError as exc:
        remove_tree(session_data(paths, sup.name))
        remove_tree(session_runtime(paths, sup.name))
        _status(status_fd, {"ok": False, "error": "SANDBOX_UNAVAILABLE",
                            "message": exc.render(), "exit_code": exc.exit_code})
        return
    except Exception as exc:
        log.exception("session %s failed to start", sup.name)
        remove_tree(session_data(paths, sup.name))
        remove_tree(session_runtime(paths, sup.name))
        _status(status_fd, {"ok": False, "error": "SANDBOX_UNAVAILABLE",
                            "message": f"the session could not start: {exc}"})
        return
    _status(status_fd, {"ok": True, "session": sup.name})
    asyncio.run(sup.main(listener))


def _status(fd: int, message: dict[str, Any]) -> None:
    try:
        os.write(fd, json.dumps(message).encode())
    finally:
        os.close(fd)
