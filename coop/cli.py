"""The `coop` command line: parsing, dispatch, and turning errors into exit codes.

This module is imported on every invocation, so it imports nothing heavy: each command's
module is loaded only when that command runs (textual, aiohttp and asyncio never load
here; a test checks it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from coop import __version__
from coop.errors import CoopError

HELP = """\
coop runs AI coding agents (Claude Code, Codex, Aider, any CLI) in a rootless
sandbox of your project.

usage without a command:
  coop [-d] [-n NAME] [-w DIR] [-f FILE] [-- CMD...]
      attach to the workspace's session, or start it (the Coopfile's agent, or CMD);
      -d starts it in the background. Ctrl+] detaches; the session keeps running.

examples:
  coop                             start (or come back to) this project's agent session
  coop -d -- claude                start Claude Code in the background
  coop attach myapp                attach this terminal to session myapp (Ctrl+] detaches)
  coop shell                       a shell in the same sandbox as the agent
  coop ls                          every session, its state, PTYs and clients
  coop run -- bash                 a shell in a sandbox of the current directory
  coop run -w ~/src/app -- make    run the test suite of ~/src/app sandboxed
  coop init --agent claude         write a commented Coopfile for Claude Code
  coop doctor                      check that this machine can run sandboxes
"""

RUN_HELP = """\
Run one command in a fresh sandbox of the workspace, in the foreground, without
the daemon (like `bwrap` or `docker run --rm -i`). The workspace is mounted
read-write at /workspace (the Coopfile's `workspace.path`); every other write
lands in a throwaway upper dir. The exit code is the command's (127 when it
does not exist inside the sandbox).

The network defaults to `proxy`: the sandbox has only its own loopback, and coop's
HTTP(S) proxy (HTTPS_PROXY is set) lets it reach the agents' APIs, the package
registries and the Coopfile's `network.allow` hosts, nothing else. `none` is loopback
only; `host` shares the host's network (no isolation); `veth` (root only) gives a
NATed interface.

examples:
  coop run -- bash
  coop run --network none -- python3 -m pytest
  coop run -f ci/Coopfile -w . -- make test
  echo hello | coop run -- tr a-z A-Z
"""

INIT_HELP = """\
Write a commented Coopfile in the workspace (refuses to replace one unless --force).

examples:
  coop init
  coop init --agent claude
  coop init --agent aider --image python:3.12-bookworm
"""

DOCTOR_HELP = """\
Check what the sandbox needs (user namespaces, overlayfs in a user namespace, the
kernel, limits, cgroup v2) and print, for each failure, the command that fixes it.
Exits 1 when a required check fails.

examples:
  coop doctor
  coop doctor --json
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coop", description=HELP, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"coop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show tracebacks and more detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("-d", "--detach", action="store_true",
                        help="start the session in the background")
    parser.add_argument("-n", "--name", metavar="NAME", help="the session's name")
    parser.add_argument("-w", "--workspace", type=Path, metavar="DIR",
                        help="the project directory (default: the current directory)")
    parser.add_argument("-f", "--file", type=Path, metavar="FILE", help="the Coopfile")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a command in a fresh sandbox, in the foreground",
                         description=RUN_HELP, formatter_class=_formatter)
    run.add_argument("-w", "--workspace", dest="run_workspace", type=Path, metavar="DIR",
                     help="the project directory (default: the current directory)")
    run.add_argument("-f", "--file", dest="run_file", type=Path, metavar="FILE",
                     help="the Coopfile (default: Coopfile, coop.yaml or coop.toml in DIR)")
    run.add_argument("--network", choices=("proxy", "none", "host", "veth"),
                     help="network mode (default: the Coopfile's, else proxy)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...",
                     help="the command and its arguments (default: the Coopfile's agent)")

    init = sub.add_parser("init", help="write a commented Coopfile",
                          description=INIT_HELP, formatter_class=_formatter)
    init.add_argument("--agent", choices=("claude", "codex", "aider", "shell"), default="shell",
                      help="which agent the Coopfile starts (default: shell)")
    init.add_argument("--image", default="host", metavar="REF",
                      help="the base: host (default), dir:PATH, tar:PATH or an OCI reference")
    init.add_argument("-w", "--workspace", dest="init_workspace", type=Path, metavar="DIR",
                      help="where to write it (default: the current directory)")
    init.add_argument("--force", action="store_true", help="replace an existing Coopfile")

    doctor = sub.add_parser("doctor", help="check that this machine can run sandboxes",
                            description=DOCTOR_HELP, formatter_class=_formatter)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")

    _add_session_commands(sub)

    completion = sub.add_parser("completion", help="print a shell completion script",
                                description="examples:\n  eval \"$(coop completion bash)\"\n"
                                            "  coop completion fish > "
                                            "~/.config/fish/completions/coop.fish",
                                formatter_class=_formatter)
    completion.add_argument("shell", choices=("bash", "zsh", "fish"),
                            help="which shell the script is for")
    return parser


def _example(text: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in text.strip().splitlines())


def _add_session_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def add(name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".\n\n"
            + _example(examples), formatter_class=_formatter)
        return parser

    attach = add("attach", "attach this terminal to a session's PTY (Ctrl+] detaches)",
                 "coop attach\ncoop attach myapp\ncoop attach ~/src/myapp --pty 1")
    attach.add_argument("session", nargs="?", help="name or workspace path (default: this "
                        "directory's session, or the only one)")
    attach.add_argument("--pty", type=int, default=0, help="which PTY (0 is the agent)")

    shell = add("shell", "open (or re-attach to) a shell in a session's sandbox",
                "coop shell\ncoop shell myapp --new\ncoop shell -c 'git status'")
    shell.add_argument("session", nargs="?", help="name or workspace path")
    shell.add_argument("-c", dest="shell_command", metavar="CMD", help="run CMD in a new PTY")
    shell.add_argument("--new", action="store_true", help="always open a new shell PTY")

    ls = add("ls", "list sessions: state, PTYs, clients, age", "coop ls\ncoop ls --json")
    ls.add_argument("--json", action="store_true", help="print JSON")

    logs = add("logs", "print a PTY's scrollback as text",
               "coop logs\ncoop logs myapp -n 50\ncoop logs -f --raw")
    logs.add_argument("session", nargs="?", help="name or workspace path")
    logs.add_argument("--pty", type=int, default=0, help="which PTY (0 is the agent)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    logs.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    logs.add_argument("--raw", action="store_true", help="keep escape sequences")
    logs.add_argument("--network", action="store_true",
                      help="the proxy's denials instead of a PTY's output")

    start = add("start", "bring a stopped session back (after a reboot or a crash), with the "
                "files it had outside the workspace", "coop start myapp\ncoop ls   # STATE stopped")
    start.add_argument("session", help="the stopped session's name")

    allow = add("allow", "let a host through a session's proxy until it ends (see `coop logs "
                "--network`; for good, add it to `network.allow` in the Coopfile)",
                "coop allow pypi.example.org\ncoop allow 10.0.0.5 myapp")
    allow.add_argument("host", help="a host name or IP address the agent was refused")
    allow.add_argument("session", nargs="?", help="name or workspace path")

    restart = add("restart", "restart a session's agent", "coop restart\ncoop restart myapp")
    restart.add_argument("session", nargs="?", help="name or workspace path")

    kill = add("kill", "end sessions: stop the sandbox and discard its upper dir",
               "coop kill            # asks first\ncoop kill myapp other\n"
               "coop kill --all -f   # without asking (scripts)")
    kill.add_argument("sessions", nargs="*", metavar="SESSION", help="names or workspace paths")
    kill.add_argument("--all", action="store_true", help="every session")
    kill.add_argument("-f", "--force", action="store_true",
                      help="do not ask first, and stop at once (no 5 s grace period)")

    status = add("status", "the daemon, and this directory's Coopfile",
                 "coop status\ncoop status --json")
    status.add_argument("--json", action="store_true", help="print JSON")

    add("tui", "the dashboard: every session, live previews, terminals",
        "coop tui")

    serve = add("serve", "the web UI for browsers and phones, served by the daemon",
                "coop serve                      # this machine only, 127.0.0.1:8888\n"
                "coop serve --host 0.0.0.0 --tls # your phone on the LAN: scan the QR code\n"
                "coop serve --read-only          # plus a link that can watch, not type\n"
                "coop serve --stop")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1; 0.0.0.0 for the LAN)")
    serve.add_argument("--port", type=int, default=8888,
                       help="port to listen on (default 8888)")
    serve.add_argument("--token", help="use this token instead of a random one")
    serve.add_argument("--read-only", action="store_true",
                       help="also print a viewer-only link")
    serve.add_argument("--tls", action="store_true",
                       help="HTTPS with a self-signed certificate (its fingerprint is printed)")
    serve.add_argument("--qr", action=argparse.BooleanOptionalAction, default=None,
                       help="print the QR code (default: when stdout is a terminal)")
    serve.add_argument("--json", action="store_true", help="print the URLs as JSON")
    serve.add_argument("--stop", action="store_true", help="stop the web server")

    build = add("build", "build the workspace's base: pull its image, run packages and setup",
                "coop build\ncoop build --pull\ncoop build -w ~/src/app")
    build.add_argument("-w", "--workspace", dest="build_workspace", type=Path, metavar="DIR",
                       help="the project directory (default: the current directory)")
    build.add_argument("-f", "--file", dest="build_file", type=Path, metavar="FILE",
                       help="the Coopfile (default: Coopfile, coop.yaml or coop.toml in DIR)")
    build.add_argument("--pull", action="store_true", help="check the registry for a newer "
                       "image even when one is pulled")
    build.add_argument("--no-cache", action="store_true",
                       help="run every packages/setup step again")

    for noun, verbs_help, prune_help in (
            ("image", "pulled images", "blobs no image uses and unfinished pulls"),
            ("volume", "named volumes", "the volumes no session mounts")):
        disk = add(noun, f"{verbs_help}: ls, rm NAME…, prune",
                   f"coop {noun} ls\ncoop {noun} rm NAME\ncoop {noun} prune")
        disk.add_argument("action", choices=("ls", "rm", "prune"),
                          help=f"ls: list them; rm: remove the named ones; prune: remove "
                          f"{prune_help}")
        disk.add_argument("names", nargs="*", metavar="NAME", help=f"rm: which {noun}s")
        disk.add_argument("--json", action="store_true", help="print JSON (ls)")

    system = add("system", "coop's disk use (df), and reclaiming it (prune): unused blobs, "
                 "unfinished pulls, built layers no session uses and none used lately",
                 "coop system df\ncoop system df --json\ncoop system prune\n"
                 "coop system prune --keep-days 0   # every built layer no session uses")
    system.add_argument("action", choices=("df", "prune"),
                        help="df: what coop's files take; prune: reclaim it")
    system.add_argument("--json", action="store_true", help="print JSON (df)")
    system.add_argument("--keep-days", type=float, default=7, metavar="N",
                        help="prune: keep built layers used in the last N days (default 7)")

    daemon = add("daemon", "the background daemon itself",
                 "coop daemon status\ncoop daemon stop\ncoop daemon logs -f")
    daemon.add_argument("action", choices=("status", "stop", "logs"),
                        help="status: is it running; stop: stop it (sessions keep running); "
                        "logs: print its log")
    daemon.add_argument("-f", "--follow", action="store_true", help="with logs: keep printing")


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser,
              tail: list[str]) -> int:
    if args.command == "run":
        from coop.commands.run import run

        cmd = tail or (args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd)
        return run(cmd, args.run_workspace, args.run_file, args.network)
    if args.command in SESSION_COMMANDS:
        return _dispatch_session(args)
    if args.command == "init":
        from coop.commands.init import init

        return init(args.init_workspace or Path.cwd(), args.agent, args.image, args.force,
                    quiet=args.quiet)
    if args.command == "doctor":
        from coop.commands.doctor import doctor

        return doctor(as_json=args.json)
    if args.command == "completion":
        from coop.commands.completion import completion_script

        sys.stdout.write(completion_script(args.shell, parser))
        return 0
    from coop.commands.session import start_or_attach

    return start_or_attach(args.workspace, args.file, args.name, tail, args.detach, args.quiet)


SESSION_COMMANDS = ("attach", "shell", "ls", "logs", "start", "allow", "restart", "kill",
                    "status",
                    "daemon",
                    "build", "image", "volume", "system", "tui", "serve")


def _dispatch_session(args: argparse.Namespace) -> int:
    from coop.commands import session

    if args.command == "attach":
        return session.attach(args.session, args.pty)
    if args.command == "shell":
        return session.shell(args.session, args.shell_command, args.new)
    if args.command == "ls":
        return session.ls(args.json)
    if args.command == "logs":
        return session.logs(args.session, args.pty, args.follow, args.lines, args.raw,
                            args.network)
    if args.command == "restart":
        return session.restart(args.session)
    if args.command == "allow":
        return session.allow(args.host, args.session)
    if args.command == "start":
        return session.start(args.session)
    if args.command == "kill":
        from coop.commands.kill import kill

        return kill(args.sessions, args.all, args.force)
    if args.command == "status":
        return session.status(args.json)
    if args.command == "serve":
        from coop.commands.serve import serve

        return serve(args.host, args.port, args.token, args.read_only, args.tls, args.stop,
                     args.qr, args.json)
    if args.command == "tui":
        from coop.tui.app import run_tui

        return run_tui()
    if args.command in ("build", "image", "volume", "system"):
        from coop.commands import disk

        if args.command == "build":
            return disk.build(args.build_workspace, args.build_file, args.pull, args.no_cache)
        if args.command == "image":
            return disk.image(args.action, args.names, args.json)
        if args.command == "volume":
            return disk.volume(args.action, args.names, args.json)
        if args.action == "prune":
            return disk.system_prune(args.keep_days)
        return disk.system_df(args.json)
    return session.daemon(args.action, args.follow)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    head, tail = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = build_parser()
    args = parser.parse_args(head)
    try:
        return _dispatch(args, parser, tail)
    except CoopError as exc:
        print(f"coop: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `coop ls | head`: the reader left, as with any Unix tool; nothing to report.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception:
        if args.verbose or os.environ.get("COOP_DEBUG"):
            raise
        import traceback

        last = traceback.format_exc().strip().splitlines()[-1]
        print(f"coop: internal error: {last}\nRun again with -v for the traceback, and "
              "please report it.", file=sys.stderr)
        return 1
