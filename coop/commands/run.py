"""`coop run`: one command in a fresh sandbox of the workspace, in the foreground.

Like `docker run --rm -i` (and `-t` when both stdin and stdout are terminals): the exit
code is the command's, stdin/stdout/stderr pass through, and the upper dir is discarded
afterwards. A terminal is never handed to the sandbox: the command gets its own PTY, or
pipes in place of any terminal fd.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from coop.config.coopfile import load_config
from coop.config.expand import expand_env
from coop.paths import coop_paths, ensure_private_dir
from coop.pty.relay import Pipe, raw_terminal, relay, window_size
from coop.sandbox.bases import resolve_config_base
from coop.sandbox.command import CommandMissing
from coop.sandbox.identity import current_identity
from coop.sandbox.init import exit_code
from coop.sandbox.launch import Sandbox, first_command, launch
from coop.sandbox.plan import SandboxPlan, build_plan, prepare, remove_tree


def sandbox_name(workspace: Path) -> str:
    """A hostname/session name from a directory: `[a-z0-9][a-z0-9._-]{0,62}`."""
    name = re.sub(r"[^a-z0-9._-]+", "-", workspace.name.lower()).strip("-._")
    return (name or "coop")[:63]


def run(argv: list[str], workspace: Path | None, coopfile: Path | None,
        network: str | None) -> int:
    paths = coop_paths()
    overrides = {"network": {"mode": network}} if network else None
    config = load_config(paths, workspace, coopfile, overrides)
    ident = current_identity()
    env, warnings = expand_env(config.env, os.environ)
    for warning in warnings:
        print(f"coop: warning: {warning}", file=sys.stderr)
    layout = resolve_config_base(config, paths)
    interactive = os.isatty(0) and os.isatty(1)
    run_id = f"run-{os.getpid()}-{os.urandom(3).hex()}"
    ensure_private_dir(paths.run_dir)
    ensure_private_dir(paths.data_dir)
    upper = paths.sessions_dir / run_id
    stage = paths.run_dir / run_id
    plan = build_plan(config, ident, paths, name=sandbox_name(config.workspace),
                      argv=argv or config.agent_command, env=env, upper_root=upper,
                      stage=stage, layout=layout,
                      tty_size=window_size(1) if interactive else None,
                      term=os.environ.get("TERM", "xterm-256color"),
                      lang=os.environ.get("LANG", "C.UTF-8"))
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        # Until the relay forwards signals, remember them: dying here would take the
        # sandbox down with us (PDEATHSIG) before the command could react.
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    try:
        prepare(plan)
        if interactive:
            return _run_with_pty(plan, config.network_allow, early, config.image)
        return _run_with_pipes(plan, config.network_allow, early, config.image)
    finally:
        remove_tree(upper)
        try:
            os.rmdir(stage)
        except OSError:
            pass


def _start_proxy(sandbox: Sandbox, allow: list[str], interactive: bool) -> None:
    """`coop run` has no daemon: the proxy runs on a thread of this process."""
    if sandbox.proxy_listener is None:
        return
    import asyncio
    import threading

    from coop.net.policy import AllowList
    from coop.net.proxy import Denial, ForwardProxy

    end = "\r\n" if interactive else "\n"

    def denied(denial: Denial) -> None:
        sys.stderr.write(f"coop: blocked {denial.host}:{denial.port}: {denial.reason}{end}")
        sys.stderr.flush()

    listener = sandbox.proxy_listener
    from coop.limits import raise_nofile

    raise_nofile()

    async def serve() -> None:
        proxy = ForwardProxy(AllowList(allow), on_denial=denied)
        await proxy.start(listener)
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name="proxy").start()


def _launch(plan: SandboxPlan, stdio: tuple[int, int, int] = (0, 1, 2)) -> Sandbox:
    """Start the sandbox; in veth mode, wire the network before the command starts."""
    if plan.network != "veth":
        return launch(plan, stdio)
    from coop.net import veth

    sandbox = launch(plan, stdio, start_first=False)
    veth.setup(sandbox.pid)
    sandbox.request({"op": "spawn", **first_command(plan)})
    return sandbox


def _spawned(sandbox: Sandbox, plan: SandboxPlan, image: str) -> int | None:
    """The command's PTY master (or None): a command init cannot find or run ends the
    sandbox, and the error says where it looked and how to install it (exit 127/126)."""
    try:
        return sandbox.spawn_result()[1]
    except CommandMissing as exc:
        sandbox.control.close()  # init kills what is left and exits
        os.waitpid(sandbox.pid, 0)
        raise exc.explained(plan.env.get("PATH", ""), image) from None


def _run_with_pty(plan: SandboxPlan, allow: list[str], early: list[int], image: str) -> int:
    sandbox = _launch(plan)
    _start_proxy(sandbox, allow, interactive=True)
    master = _spawned(sandbox, plan, image)
    assert master is not None
    with raw_terminal(0):
        status = relay([Pipe(0, master, close_dst_on_eof=False),
                        Pipe(master, 1, close_dst_on_eof=False, output=True)],
                       sandbox.pid, resize=(1, master), forward_to=sandbox.pid,
                       early_signals=early)
    os.close(master)
    return exit_code(status)


def _run_with_pipes(plan: SandboxPlan, allow: list[str], early: list[int],
                    image: str) -> int:
    """Non-terminal fds go straight in; any terminal fd is replaced by a relayed pipe."""
    stdio: list[int] = []
    pipes: list[Pipe] = []
    theirs: list[int] = []
    for fd in (0, 1, 2):
        if not os.isatty(fd):
            stdio.append(fd)
            continue
        read_end, write_end = os.pipe()
        if fd == 0:
            stdio.append(read_end)
            pipes.append(Pipe(0, write_end, close_dst_on_eof=True))
            theirs.append(read_end)
        else:
            stdio.append(write_end)
            pipes.append(Pipe(read_end, fd, close_dst_on_eof=False, output=True))
            theirs.append(write_end)
    sandbox = _launch(plan, (stdio[0], stdio[1], stdio[2]))
    _start_proxy(sandbox, allow, interactive=False)
    for fd in theirs:
        os.close(fd)
    _spawned(sandbox, plan, image)
    status = relay(pipes, sandbox.pid, forward_to=sandbox.pid, early_signals=early)
    return exit_code(status)
