"""The daemon: one per user, the control plane of every session (SPEC §6, §7).

Life cycle (uvicorn's shape): `serve()` = `startup()` (socket, pid file, re-adopting live
sessions) → `main_loop()` (until stopped or idle) → `shutdown()` (tell clients, close, leave
every session running). Terminal bytes never pass through here: an `attach` is handed to
the session's supervisor together with the client's socket, so a flooding session cannot
delay another one's keystrokes, and attached clients survive the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from coop import __version__
from coop.daemon.supervisor import listen, session_data, session_runtime, session_socket
from coop.daemon.zygote import Zygote
from coop.ipc.conn import Conn, peer_uid
from coop.ipc.framing import PROTOCOL_VERSION, ProtocolError, decode_json, encode, error
from coop.paths import CoopPaths, ensure_private_dir
from coop.sessionref import unknown_session

log = logging.getLogger("coop.daemon")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
HANDOFF_COMMANDS = {"attach", "shell", "logs", "snapshot"}
STREAM_LIMIT = 64 * 1024
"""The StreamReader limit of a stream the daemon opens for itself (a web terminal): asyncio
stops reading its socket once twice this much waits unread."""


class SessionLink:
    """The daemon's channel to one supervisor: requests with ids, events without."""

    def __init__(self, daemon: Daemon, name: str, conn: Conn) -> None:
        self.daemon = daemon
        self.name = name
        self.conn = conn
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.info: dict[str, Any] = {"name": name}
        self.closed = asyncio.get_running_loop().create_future()

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        ident = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        self.conn.reply({**message, "id": ident})
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return error("SESSION_NOT_FOUND", f"session {self.name} does not answer")
        finally:
            self.pending.pop(ident, None)

    async def open_stream(self, request: dict[str, Any]
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the supervisor as if a client had made `request` (web clients:
        the daemon hands one end of a socketpair over and keeps the other)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            frame = encode({"cmd": "handoff", "id": next(self.ids), "request": request})
            self.conn.send_with_fds(frame, [theirs.fileno()])
        finally:
            theirs.close()
        return await asyncio.open_unix_connection(sock=ours, limit=STREAM_LIMIT)

    def handoff(self, client: Conn, request: dict[str, Any]) -> None:
        frame = encode({"cmd": "handoff", "id": next(self.ids), "request": request})
        self.conn.send_with_fds(frame, [client.fd])

    def on_frame(self, conn: Conn, kind: int, body: bytes) -> None:
        message = decode_json(body)
        ident = message.pop("id", None)
        if ident is not None:
            future = self.pending.get(ident)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if "event" in message:
            if message["event"] == "clients" and "ptys" in self.info:
                for pty in self.info["ptys"]:
                    if pty["id"] == message.get("pty"):
                        pty["clients"] = message.get("clients", {})
            elif message["event"] == "agent_stopped":  # the cached `ls` shows it too
                self.info.update(state=message.get("state"), reason=message.get("reason"))
            elif message["event"] == "pty_added" and message.get("kind") == "agent":
                self.info["state"] = "running"  # started again (`coop restart`)
                self.info.pop("reason", None)
            self.daemon.publish(message)

    def on_close(self, conn: Conn) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_result(error("SESSION_NOT_FOUND", f"session {self.name} ended"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.daemon.forget(self)


class Daemon:
    def __init__(self, paths: CoopPaths, idle_timeout: float) -> None:
        self.paths = paths
        self.idle_timeout = idle_timeout
        self.sessions: dict[str, SessionLink] = {}
        self.creating: set[str] = set()
        """Names whose supervisor is starting (its data dir exists, its socket not yet)."""
        self.clients: set[Conn] = set()
        self.subscribers: set[Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.web: Any = None
        """The running `coop serve` web server, if any."""
        self.web_subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.started = time.time()
        self.idle_since = time.monotonic()
        self.stopping: asyncio.Event | None = None
        self.zygote: Zygote | None = None
        self.listener: socket.socket | None = None
        self.socket_path = paths.run_dir / "daemon.sock"

    # -- life cycle -------------------------------------------------------------------
    def serve(self) -> None:
        self.zygote = Zygote()  # forked before any event loop exists
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        await self.startup()
        try:
            await self.main_loop()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        ensure_private_dir(self.paths.run_dir)
        ensure_private_dir(self.paths.run_dir / "sessions")
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.adopt()
        self.listener = listen(self.socket_path)
        self.listener.setblocking(False)
        loop.add_reader(self.listener.fileno(), self._accept)
        (self.paths.run_dir / "daemon.pid").write_text(f"{os.getpid()}\n")
        log.info("daemon %s started (pid %d), %d session(s) adopted", __version__, os.getpid(),
                 len(self.sessions))

    async def adopt(self) -> None:
        """Re-attach to every live supervisor; drop the sockets of dead ones."""
        for path in sorted((self.paths.run_dir / "sessions").glob("*.sock")):
            name = path.name[:-len(".sock")]
            link = await self._connect(name)
            if link is None:
                log.info("session %s: stale socket removed", name)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def _connect(self, name: str,
                       info: dict[str, Any] | None = None) -> SessionLink | None:
        """A channel to a supervisor; with `info` known (a session just created), its
        details are not fetched here."""
        path = session_socket(self.paths, name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, str(path))
        except OSError:
            sock.close()
            return None
        loop = asyncio.get_running_loop()
        handshake: asyncio.Future[bool] = loop.create_future()

        def first_frame(conn: Conn, kind: int, body: bytes) -> None:
            ok = decode_json(body).get("ok") is True
            if not handshake.done():
                handshake.set_result(ok)

        def closed(conn: Conn) -> None:
            if not handshake.done():
                handshake.set_result(False)

        conn = Conn(sock, first_frame, closed, limit=64 << 20)
        conn.start()
        conn.reply({"version": PROTOCOL_VERSION})
        try:
            ok = await asyncio.wait_for(handshake, 2.0)
        except TimeoutError:
            ok = False
        if not ok:
            conn.close()
            return None
        link = SessionLink(self, name, conn)
        conn.on_frame = link.on_frame
        conn.on_close = link.on_close
        self.sessions[name] = link
        if info is None:
            await self._refresh_info(link)
        else:
            link.info = info
        return link

    async def _refresh_info(self, link: SessionLink) -> None:
        reply = await link.request({"cmd": "info"})
        if reply.get("ok"):
            link.info = reply["session"]

    async def main_loop(self) -> None:
        assert self.stopping is not None
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
            if self.sessions or self.clients or self.web is not None:
                self.idle_since = time.monotonic()
            elif self.idle_timeout and time.monotonic() - self.idle_since > self.idle_timeout:
                log.info("idle for %.0f s with no sessions: exiting", self.idle_timeout)
                break

    async def shutdown(self) -> None:
        """Tell clients, close everything; sessions keep running in their supervisors."""
        if self.web is not None:
            await self.web.stop()
        for conn in list(self.subscribers):
            conn.reply({"event": "detached", "reason": "the daemon stopped"})
        for conn in list(self.clients):
            conn.close(flush=True)
        await asyncio.sleep(0.05)
        for link in list(self.sessions.values()):
            link.conn.on_close = None
            link.conn.close()
        self._stop_listening()
        with contextlib.suppress(FileNotFoundError):
            (self.paths.run_dir / "daemon.pid").unlink()
        if self.zygote is not None:
            self.zygote.close()
        log.info("daemon stopped; %d session(s) left running", len(self.sessions))

    # -- clients ----------------------------------------------------------------------
    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        if peer_uid(sock) != os.getuid():
            log.warning("refused a connection from uid %d", peer_uid(sock))
            sock.close()
            return
        conn = Conn(sock, self._on_handshake, self._on_client_close)
        self.clients.add(conn)
        conn.start()

    def _on_client_close(self, conn: Conn) -> None:
        self.clients.discard(conn)
        self.subscribers.discard(conn)

    def _on_handshake(self, conn: Conn, kind: int, body: bytes) -> None:
        message = decode_json(body)
        if message.get("version") != PROTOCOL_VERSION:
            conn.reply(error("VERSION_MISMATCH",
                             f"this daemon speaks protocol version {PROTOCOL_VERSION}; "
                             f"the client sent {message.get('version')!r}. Run "
                             "`coop daemon stop` after upgrading coop."))
            conn.close(flush=True)
            return
        conn.reply({"version": PROTOCOL_VERSION, "ok": True})
        conn.on_frame = self._on_request

    def _on_request(self, conn: Conn, kind: int, body: bytes) -> None:
        message = decode_json(body)
        cmd = message.get("cmd")
        if not isinstance(cmd, str):
            raise ProtocolError("INVALID_COMMAND", "a request needs a string `cmd`")
        if cmd in HANDOFF_COMMANDS:
            conn.pause_reading()  # the rest of this connection belongs to a supervisor
        task = asyncio.get_running_loop().create_task(self._dispatch(conn, cmd, message))
        self.tasks.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a request failed: %r", task.exception())

    async def _dispatch(self, conn: Conn, cmd: str, message: dict[str, Any]) -> None:
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            conn.reply(error("INVALID_COMMAND", f"unknown command {cmd!r}"))
            return
        try:
            reply = await handler(conn, message)
        except (KeyError, TypeError, ValueError) as exc:
            reply = error("INVALID_COMMAND", f"bad {cmd} request: {exc}")
        if reply is not None:
            conn.reply(reply)
            if cmd in HANDOFF_COMMANDS:
                conn.close(flush=True)

    def publish(self, event: dict[str, Any]) -> None:
        for conn in self.subscribers:
            conn.reply(event)
        for queue in self.web_subscribers:
            if not queue.full():
                queue.put_nowait(event)

    def forget(self, link: SessionLink) -> None:
        if self.sessions.get(link.name) is link:
            del self.sessions[link.name]
            self.publish({"event": "session_exited", "session": link.name, "time": time.time()})

    def find(self, ref: str | None, cwd: str | None = None) -> SessionLink | dict[str, Any]:
        """A session by name or workspace path (default: the cwd's, else the only one)."""
        if ref and ref in self.sessions:
            return self.sessions[ref]
        path = self._path(ref, cwd)
        if path:
            for link in self.sessions.values():
                if link.info.get("workspace") == path:
                    return link
        if not ref and len(self.sessions) == 1:
            return next(iter(self.sessions.values()))
        if not ref and not self.sessions:
            return error("SESSION_NOT_FOUND", "there are no sessions")
        if not ref:
            return error("SESSION_NOT_FOUND", "several sessions run; name one (see `coop ls`)")
        stopped = [str(s["name"]) for s in self.stopped_sessions()]
        if ref in stopped:
            return error("SESSION_NOT_FOUND",
                         f"session {ref} is stopped (its processes are gone, its files kept): "
                         f"`coop start {ref}` runs it again")
        names = [*self.sessions, *stopped]
        return error("SESSION_NOT_FOUND",
                     unknown_session(ref, names, is_dir=bool(path and os.path.isdir(path))))

    @staticmethod
    def _path(ref: str | None, cwd: str | None) -> str | None:
        """The workspace path `ref` may mean (relative to the client's cwd), else the cwd."""
        if ref:
            return os.path.realpath(os.path.join(cwd or "/", ref))
        return os.path.realpath(cwd) if cwd else None

    # -- commands ---------------------------------------------------------------------
    async def cmd_status(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "version": __version__,
                "uptime": time.time() - self.started, "sessions": len(self.sessions),
                "clients": len(self.clients), "idle_timeout": self.idle_timeout,
                "web": self.web.summary() if self.web is not None else None}

    async def cmd_ls(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        """Every session; `"fresh": false` answers from what the daemon already knows
        (names and workspaces) instead of asking each supervisor."""
        links = list(self.sessions.values())
        web = self.web.summary() if self.web is not None else None
        stopped = self.stopped_sessions()
        if message.get("fresh") is False:
            return {"ok": True, "sessions": [link.info for link in links] + stopped, "web": web}
        replies = await asyncio.gather(*(link.request({"cmd": "info"}, 2.0) for link in links))
        sessions = []
        for link, reply in zip(links, replies, strict=True):
            if reply.get("ok"):
                link.info = reply["session"]
            sessions.append(link.info)
        return {"ok": True, "sessions": sessions + stopped, "web": web}

    def stopped_sessions(self) -> list[dict[str, Any]]:
        """Sessions whose supervisor is gone (a reboot, a kill -9) but whose files remain:
        `coop` in the workspace or `coop start NAME` brings them back in the same state,
        `coop kill NAME` discards them (SPEC §12a)."""
        found = []
        for meta in sorted(self.paths.sessions_dir.glob("*/meta.json")):
            name = meta.parent.name
            if name in self.sessions or name in self.creating:
                continue
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            found.append({"name": name, "workspace": info.get("workspace", ""),
                          "created": info.get("created", 0), "state": "stopped",
                          "argv": info.get("argv"), "ptys": []})
        return found

    async def cmd_create(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        workspace = os.path.realpath(str(message["workspace"]))
        name = message.get("name")
        if name:
            if not NAME_RE.fullmatch(name):
                return error("INVALID_COMMAND", f"{name!r} is not a valid session name "
                                                "(lowercase letters, digits, . _ -)")
            if message.get("revive"):
                self._drop_stale_socket(name)
            if name in self.sessions or name in self.creating or \
                    session_socket(self.paths, name).exists():
                return error("SESSION_EXISTS", f"a session named {name} already exists")
            if session_data(self.paths, name).exists() and not message.get("revive"):
                return error("SESSION_EXISTS", f"a stopped session named {name} exists: "
                                               f"`coop start {name}` brings it back, "
                                               f"`coop kill {name}` discards it")
        else:
            name = self._unique_name(Path(workspace).name)
        request = {k: message.get(k) for k in ("coopfile", "argv", "env", "term", "lang",
                                                "size", "overrides", "identity_env")}
        request.update(name=name, workspace=workspace)
        assert self.zygote is not None
        self.creating.add(name)
        try:
            status = await self._read_status(self.zygote.spawn(request))
        finally:
            self.creating.discard(name)
        if not status.get("ok"):
            return status
        self.publish({"event": "session_created", "session": name, "time": time.time()})
        link = await self._connect(name, {"name": name, "workspace": workspace})
        if link is None:
            return error("SANDBOX_UNAVAILABLE", f"session {name} started but does not answer")
        task = asyncio.get_running_loop().create_task(self._announce(link))
        self.tasks.add(task)
        task.add_done_callback(self._request_done)
        log.info("session %s created", name)
        return {"ok": True, "session": name}  # the agent runs: no need to wait for its info

    async def _announce(self, link: SessionLink) -> None:
        """Fetch a new session's details and announce the PTYs that started before we
        were connected to it."""
        await self._refresh_info(link)
        for pty in link.info.get("ptys", []):
            self.publish({"event": "pty_added", "session": link.name, "pty": pty["id"],
                          "kind": pty["kind"], "time": time.time()})

    async def _read_status(self, fd: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        chunks = bytearray()

        def readable() -> None:
            data = os.read(fd, 65536)
            if data:
                chunks.extend(data)
                return
            loop.remove_reader(fd)
            done.set_result(bytes(chunks))

        loop.add_reader(fd, readable)
        try:
            raw = await asyncio.wait_for(done, 60)
        except TimeoutError:
            loop.remove_reader(fd)
            raw = b""
        finally:
            os.close(fd)
        if not raw:
            return error("SANDBOX_UNAVAILABLE", "the session's supervisor died while starting; "
                                                "see `coop daemon logs`")
        result: dict[str, Any] = json.loads(raw)
        return result

    def _unique_name(self, base: str) -> str:
        stem = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")[:56] or "session"
        for n in itertools.count(1):
            name = stem if n == 1 else f"{stem}-{n}"
            if name not in self.sessions and name not in self.creating and \
                    not session_socket(self.paths, name).exists() and \
                    not session_data(self.paths, name).exists():  # a stopped one's files
                return name
        raise AssertionError("unreachable")

    async def _handoff(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any] | None:
        found = self.find(message.get("session"), message.get("cwd"))
        if isinstance(found, dict):
            return found
        if conn.parser.buffered:
            return error("INVALID_COMMAND", "send nothing after a stream request until "
                                            "its reply")
        found.handoff(conn, message)
        conn.on_close = None
        self.clients.discard(conn)
        conn.close()  # our copy only: the supervisor holds the connection now
        return None

    cmd_attach = _handoff
    cmd_shell = _handoff
    cmd_logs = _handoff
    cmd_snapshot = _handoff

    def _kill_targets(self, message: dict[str, Any]) -> tuple[list[SessionLink], list[str]] \
            | dict[str, Any]:
        """The running sessions a `kill` message means, and the stopped ones it discards."""
        stopped = {s["name"]: s for s in self.stopped_sessions()}
        if message.get("all"):
            return list(self.sessions.values()), list(stopped)
        targets, discarded = [], []
        for ref in message.get("sessions") or [None]:
            name = ref if ref in stopped else self._stopped_in(ref, message, stopped)
            if name:
                discarded.append(name)
                continue
            found = self.find(ref, message.get("cwd"))
            if isinstance(found, dict):
                return found
            targets.append(found)
        return list(dict.fromkeys(targets)), list(dict.fromkeys(discarded))

    async def cmd_kill_targets(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        """What `kill` with the same fields would kill, killing nothing: `coop kill` asks
        the user about exactly these names. (A command of its own, not a flag, so a daemon
        too old to know it refuses it instead of killing.)"""
        found = self._kill_targets(message)
        if isinstance(found, dict):
            return found
        targets, discarded = found
        return {"ok": True, "sessions": [link.name for link in targets] + discarded}

    async def cmd_kill(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        found = self._kill_targets(message)
        if isinstance(found, dict):
            return found
        targets, discarded = found
        for name in discarded:  # nothing runs: its files are all there is
            await asyncio.get_running_loop().run_in_executor(None, self._discard, name)
        for link in targets:
            await link.request({"cmd": "kill", "force": bool(message.get("force"))})
        await asyncio.gather(*(asyncio.wait_for(asyncio.shield(link.closed), 10)
                               for link in targets), return_exceptions=True)
        return {"ok": True, "killed": [link.name for link in targets] + discarded}

    def _stopped_in(self, ref: str | None, message: dict[str, Any],
                    stopped: dict[str, dict[str, Any]]) -> str | None:
        """The stopped session whose workspace `ref` (or the cwd) is, when none runs there."""
        path = self._path(ref, message.get("cwd"))
        if not path or ref in self.sessions or any(link.info.get("workspace") == path
                           for link in self.sessions.values()):
            return None
        return next((name for name, s in stopped.items() if s.get("workspace") == path), None)

    def _drop_stale_socket(self, name: str) -> None:
        """A supervisor that died without cleaning up left its socket: nobody answers it."""
        path = session_socket(self.paths, name)
        if name in self.sessions or not path.exists():
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return  # alive after all
            except OSError:
                pass
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _discard(self, name: str) -> None:
        from coop.sandbox.plan import remove_tree

        remove_tree(session_data(self.paths, name))
        remove_tree(session_runtime(self.paths, name))

    async def cmd_restart(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        found = self.find(message.get("session"), message.get("cwd"))
        if isinstance(found, dict):
            return found
        reply = await found.request({"cmd": "restart"})
        return {**reply, "session": found.name}

    async def cmd_allow(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        """Let a host through a session's proxy while it runs (`coop allow HOST`)."""
        found = self.find(message.get("session"), message.get("cwd"))
        if isinstance(found, dict):
            return found
        reply = await found.request({"cmd": "allow", "host": message.get("host")})
        return {**reply, "session": found.name}

    async def cmd_resize(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        found = self.find(message.get("session"), message.get("cwd"))
        if isinstance(found, dict):
            return found
        return await found.request({"cmd": "resize", "pty": message.get("pty", 0),
                                    "rows": int(message["rows"]), "cols": int(message["cols"])})

    async def cmd_events(self, conn: Conn, message: dict[str, Any]) -> None:
        conn.reply({"ok": True})
        self.subscribers.add(conn)

    async def cmd_shutdown(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        """Stop: from this reply on nobody new reaches this daemon (the next command
        starts a fresh one), and the caller may wait for `pid` to be gone."""
        assert self.stopping is not None
        self._stop_listening()
        asyncio.get_running_loop().call_later(0.05, self.stopping.set)
        return {"ok": True, "pid": os.getpid()}

    def _stop_listening(self) -> None:
        if self.listener is None:
            return
        asyncio.get_running_loop().remove_reader(self.listener.fileno())
        self.listener.close()
        self.listener = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def cmd_serve(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        """Start (or with `stop`, stop) the web server in this process."""
        if message.get("stop"):
            was_running = self.web is not None
            if self.web is not None:
                await self.web.stop()
                self.web = None
            return {"ok": True, "running": False, "stopped": was_running}
        if self.web is not None:
            return {"ok": True, "running": True, "already": True, **self.web.urls()}
        from coop.web.server import WebServer

        web = WebServer(self, str(message.get("host") or "127.0.0.1"),
                        int(message.get("port") or 8888), message.get("token"),
                        bool(message.get("read_only")), bool(message.get("tls")))
        try:
            await web.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return error("PORT_IN_USE", f"port {web.port} is in use on {web.host}")
            return error("INVALID_COMMAND", f"cannot listen on {web.host}:{web.port}: "
                                            f"{exc.strerror or exc}")
        self.web = web
        log.info("web server listening on %s:%d", web.host, web.port)
        return {"ok": True, "running": True, **web.urls()}

    async def cmd_tunnel(self, conn: Conn, message: dict[str, Any]) -> dict[str, Any]:
        return error("INVALID_COMMAND", "remote access (coop tunnel) is not part of this "
                                        "version yet")


def main() -> None:
    """`python -m coop.daemon`: what the CLI starts in the background."""
    from coop.paths import coop_paths
    from coop.proctitle import set_title

    set_title("coop-daemon")  # before the zygote forks: it inherits the looked-up argv
    paths = coop_paths()
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s daemon[{os.getpid()}] %(levelname)s %(message)s")
    Daemon(paths, _idle_timeout(paths)).serve()


def _idle_timeout(paths: CoopPaths) -> float:
    """COOP_DAEMON_IDLE_TIMEOUT, else the global config's `daemon.idle_timeout_s`, else 30."""
    if "COOP_DAEMON_IDLE_TIMEOUT" in os.environ:
        return float(os.environ["COOP_DAEMON_IDLE_TIMEOUT"])
    if paths.config_file.is_file():
        from coop.config.schema import GLOBAL_CONFIG, validate
        from coop.config.yamlsource import read_source
        from coop.errors import CoopError

        try:
            data = validate(read_source(paths.config_file), GLOBAL_CONFIG, Path.home())
            return float(data.get("daemon", {}).get("idle_timeout_s", 30))
        except CoopError as exc:
            log.warning("ignoring the global config: %s", exc.message)
    return 30.0
