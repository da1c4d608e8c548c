"""Session commands: `coop` itself, attach, shell, ls, logs, restart, status, daemon."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from coop.commands.table import print_table
from coop.config.coopfile import CoopConfig, load_config
from coop.config.expand import expand_env
from coop.errors import CoopError
from coop.ipc.client import DaemonError, RequestError, call, connect, request
from coop.ipc.framing import CONTROL, FrameParser
from coop.paths import CoopPaths, coop_paths
from coop.pty.plain import plain_text
from coop.pty.relay import window_size
from coop.sessionref import printable, unknown_session

IDENTITY_VARS = ("HOME", "USER")
NEVER_STARTED = ("not-found", "cannot-run")
"""Session states whose agent could not be started: `coop` replaces such a session."""


def _size() -> list[int]:
    size = window_size(0) or window_size(1) or (24, 80)
    return [size[0], size[1]]


def create_request(config: CoopConfig, coopfile: Path | None, name: str | None,
                   argv: list[str], size: list[int]) -> dict[str, Any]:
    """The `create` request for a workspace: its base is pulled and built first (with
    progress), and the Coopfile's `env` is expanded here, from the user's environment."""
    if config.image != "host" or config.packages or config.setup:
        from coop.sandbox.bases import resolve_config_base

        resolve_config_base(config, coop_paths())  # the host needs no pull and no build
    env, warnings = expand_env(config.env, os.environ)
    for warning in warnings:
        print(f"coop: warning: {warning}", file=sys.stderr)
    return {"cmd": "create", "workspace": str(config.workspace),
            "coopfile": str(coopfile.absolute()) if coopfile else None,
            "name": name, "argv": argv or None, "env": env,
            "term": os.environ.get("TERM", "xterm-256color"),
            "lang": os.environ.get("LANG", "C.UTF-8"), "size": size,
            "identity_env": {k: os.environ[k] for k in IDENTITY_VARS if k in os.environ}}


def workspace_create_request(paths: CoopPaths, workspace: Path, name: str | None = None,
                             argv: list[str] | None = None) -> dict[str, Any]:
    """What `coop -d` sends for a workspace path (the TUI's and the page's new sessions)."""
    return create_request(load_config(paths, workspace), None, name, argv or [], [24, 80])


def start_or_attach(workspace: Path | None, coopfile: Path | None, name: str | None,
                    argv: list[str], detached: bool, quiet: bool = False) -> int:
    """`coop`: attach to the workspace's session, or create it."""
    paths = coop_paths()
    config = load_config(paths, workspace, coopfile)
    with connect(paths) as sock:
        # Names and workspaces are all it needs: no round trip to every supervisor.
        sessions = request(sock, {"cmd": "ls", "fresh": False})["sessions"]
        existing = [s for s in sessions if (s["name"] == name if name
                                            else s.get("workspace") == str(config.workspace))]
        live = [s for s in existing if s.get("state") != "stopped"]
        # The cached state gates the supervisor round trip: a running agent costs nothing.
        if live and live[0].get("state") in NEVER_STARTED and \
                _never_started(sock, live[0]["name"], quiet):
            live = existing = []
        if live:
            session = live[0]["name"]
            if argv and not quiet:
                print(f"coop: session {session} already runs; attaching to it "
                      "(the command is ignored).", file=sys.stderr)
        elif existing:  # stopped (a reboot): back with the files it had
            stopped = existing[0]
            if not quiet:
                print(f"coop: starting session {stopped['name']} again, in the state it was "
                      "left in (`coop kill` it for a fresh one)", file=sys.stderr)
            message = create_request(config, coopfile, stopped["name"],
                                     argv or list(stopped.get("argv") or []), _size())
            session = request(sock, {**message, "revive": True})["session"]
        else:
            reply = request(sock, create_request(config, coopfile, name, argv, _size()))
            session = reply["session"]
    if detached:
        if not quiet:
            print(session)
        return 0
    return attach(session, 0, config.detach_keys)


def _never_started(sock: Any, name: str, quiet: bool) -> bool:
    """Whether `name`'s agent was never started (init found its command missing) and
    nothing else runs in it: then it is killed, so that a fresh session sees what was
    installed since (a new base, a new PATH lookup) and the command given now. An agent
    that ran, however briefly, may have written files: its session is kept."""
    fresh = [s for s in request(sock, {"cmd": "ls"})["sessions"] if s["name"] == name]
    if not fresh or fresh[0].get("state") not in NEVER_STARTED or \
            fresh[0].get("agent_runs", 1) != 0 or \
            any(p.get("alive") for p in fresh[0].get("ptys", [])):
        return False
    request(sock, {"cmd": "kill", "sessions": [name], "force": True})
    if not quiet:
        print(f"coop: the agent of session {name} never started; starting it afresh",
              file=sys.stderr)
    return True


def attach(session: str | None, pty: int, detach_keys: str = "ctrl-]",
           kind: str = "local", cmd: str = "attach", extra: dict[str, Any] | None = None) -> int:
    from coop.commands.attach import detach_byte, report, stream  # not needed by `coop -d`

    paths = coop_paths()
    sock = connect(paths)
    message: dict[str, Any] = {"cmd": cmd, "session": session, "pty": pty, "kind": kind,
                               "size": _size(), "cwd": os.getcwd(), **(extra or {})}
    try:
        reply = request(sock, message)
    except RequestError:
        sock.close()
        raise
    name = str(reply.get("session", session))
    try:
        outcome = stream(sock, name, detach_byte(detach_keys))
    finally:
        sock.close()
    return report(name, outcome)


def shell(session: str | None, command: str | None, new: bool) -> int:
    extra: dict[str, Any] = {"new": new}
    if command:
        extra["argv"] = ["/bin/sh", "-c", command]
    return attach(session, 0, cmd="shell", extra=extra)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _clients(ptys: list[dict[str, Any]]) -> str:
    totals: dict[str, int] = {}
    for pty in ptys:
        for kind, count in pty.get("clients", {}).items():
            totals[kind] = totals.get(kind, 0) + count
    return ", ".join(f"{n} {kind}" for kind, n in sorted(totals.items())) or "-"


def ls(as_json: bool) -> int:
    from coop.commands.serve import summary_line

    reply = call(coop_paths(), {"cmd": "ls"})
    sessions = reply["sessions"]
    if as_json:
        print(json.dumps(sessions, indent=2))
        return 0
    web = summary_line(reply.get("web"))
    if not sessions:
        print("No sessions. Start one with `coop` in a project (or `coop -d`).")
        if web:
            print(web)
        return 0
    now = time.time()
    rows = [("SESSION", "WORKSPACE", "STATE", "PTYS", "CLIENTS", "AGE")]
    for s in sessions:
        ptys = s.get("ptys", [])
        waiting = any(p.get("waiting") for p in ptys if p.get("kind") == "agent")
        state = s.get("state", "?") + (" (waiting)" if waiting else "")
        alive = sum(1 for p in ptys if p.get("alive"))
        home = os.path.expanduser("~")
        workspace = str(s.get("workspace", ""))
        if workspace.startswith(home + "/"):
            workspace = "~" + workspace[len(home):]
        rows.append((s["name"], workspace, state, str(alive), _clients(ptys),
                     _age(now - s.get("created", now))))
    print_table(rows)
    if web:
        print(web)
    return 0


def logs(session: str | None, pty: int, follow: bool, lines: int | None, raw: bool,
         network: bool = False) -> int:
    """Print the scrollback; it ends with a newline like any text (a shell prompt would
    otherwise be glued to the last line), and an empty denial list says so."""
    paths = coop_paths()
    sock = connect(paths)
    reply = request(sock, {"cmd": "logs", "session": session, "pty": pty, "follow": follow,
                           "lines": lines, "cwd": os.getcwd(), "network": network})
    parser = FrameParser(stream=True)
    out = sys.stdout.buffer
    last = b""
    try:
        while True:
            data = sock.recv(262144)
            if not data:
                break
            parser.feed(data)
            for kind, body in parser.frames():
                if kind != CONTROL:
                    text = body if raw else plain_text(body)
                    out.write(text)
                    last = text[-1:] or last
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if last and last != b"\n":
        out.write(b"\n")
        out.flush()
    if network and not last and not follow and lines != 0:
        name = reply.get("session", session or "this directory's session")
        print(f"No network requests were refused in session {name}.")
    return 0


def start(name: str) -> int:
    """`coop start NAME`: a stopped session back, detached, in its own workspace."""
    sessions = call(coop_paths(), {"cmd": "ls", "fresh": False})["sessions"]
    found = [s for s in sessions if s["name"] == name]
    if not found:
        raise RequestError("SESSION_NOT_FOUND",
                           unknown_session(name, [str(s["name"]) for s in sessions]))
    if found[0].get("state") != "stopped":
        print(f"{name} is already running (`coop attach {name}`)")
        return 0
    start_or_attach(Path(found[0]["workspace"]), None, name, [], detached=True, quiet=True)
    print(f"{name} runs again: `coop attach {name}`")
    return 0


def allow(host: str, session: str | None) -> int:
    reply = call(coop_paths(), {"cmd": "allow", "host": host, "session": session,
                                "cwd": os.getcwd()})
    print(f"{reply['host']} is allowed in {reply['session']} until it ends "
          "(for good: add it to `network.allow` in the Coopfile)")
    return 0


def restart(session: str | None) -> int:
    reply = call(coop_paths(), {"cmd": "restart", "session": session, "cwd": os.getcwd()})
    print(f"restarting the agent of {reply.get('session', session)}")
    return 0


def status(as_json: bool) -> int:
    paths = coop_paths()
    try:
        daemon = call(paths, {"cmd": "status"}, autostart=False)
    except DaemonError:
        daemon = {"ok": False}
    info: dict[str, Any] = {"daemon": daemon}
    sessions = call(paths, {"cmd": "ls"}, autostart=False)["sessions"] if daemon.get("ok") \
        else []
    try:
        config = load_config(paths)
        if daemon.get("ok"):
            info["sessions"] = [s for s in sessions
                                if s.get("workspace") == str(config.workspace)]
        info["workspace"] = str(config.workspace)
        info["coopfile"] = [str(p) for p in config.sources]
        info["image"] = config.image
        info["network"] = config.network_mode
    except CoopError as exc:
        info["config_error"] = exc.render()
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    if daemon.get("ok"):
        print(f"daemon: running (pid {daemon['pid']}, up {_age(daemon['uptime'])}, "
              f"{daemon['sessions']} session(s), {daemon['clients']} client(s))")
        from coop.commands.serve import summary_line

        print(summary_line(daemon.get("web")) or "web: not serving (`coop serve` starts it)")
    else:
        print("daemon: not running (any coop command starts it)")
    if "config_error" in info:
        print(f"config: {info['config_error']}")
    else:
        print(f"workspace: {info['workspace']}")
        print(f"coopfile: {', '.join(info['coopfile']) or 'none (defaults)'}")
        print(f"image: {info['image']}   network: {info['network']}")
        for session in info.get("sessions", []):
            print(f"session: {session['name']} ({_agent_state(session)})")
    return 0


def _agent_state(session: dict[str, Any]) -> str:
    """`running`, or the state with why the agent is not running. The reason quotes the
    agent's command and PATH, which its Coopfile sets: no control character of it reaches
    the terminal."""
    state = str(session.get("state", "?"))
    if not session.get("reason"):
        return state
    return f"{state}: {printable(str(session['reason']))}"


def _wait_gone(pid: int, timeout: float = 10) -> None:
    """Until the process has exited (so "stopped" is true when it is printed). An exited
    process its reaper has not collected yet (a zombie) counts as gone."""
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)


def daemon(action: str, follow: bool = False) -> int:
    paths = coop_paths()
    if action == "status":
        try:
            reply = call(paths, {"cmd": "status"}, autostart=False)
        except DaemonError:
            print("the daemon is not running")
            return 1
        print(f"running: pid {reply['pid']}, version {reply['version']}, up "
              f"{_age(reply['uptime'])}, {reply['sessions']} session(s), "
              f"{reply['clients']} client(s)")
        return 0
    if action == "stop":
        try:
            reply = call(paths, {"cmd": "shutdown"}, autostart=False)
        except DaemonError:
            print("the daemon is not running")
            return 0
        _wait_gone(int(reply.get("pid") or 0))
        print("the daemon stopped; sessions keep running")
        return 0
    log = paths.daemon_log
    if not log.exists():
        print(f"no daemon log yet ({log})")
        return 0
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 64 * 1024))
        sys.stdout.buffer.write(f.read())
        sys.stdout.flush()
        while follow:
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0
