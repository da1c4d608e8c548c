"""The `coop` command line: parsing, dispatch, and turning errors into exit codes.

This module is imported on every invocation, so it imports nothing heavy: each command's
module is loaded only when that command runs (textual, aiohttp and aiortc never load here;
a test checks it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from coop import __version__
from coop.errors import CoopError

HELP = """\
coop runs AI coding agents (Claude Code, Codex, Aider, any CLI) in a rootless
sandbox of your project.

examples:
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

The network defaults to `host` (no isolation) until the filtering proxy is the
default; `--network none` gives the sandbox loopback only.

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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a command in a fresh sandbox, in the foreground",
                         description=RUN_HELP, formatter_class=_formatter)
    run.add_argument("-w", "--workspace", type=Path, metavar="DIR",
                     help="the project directory (default: the current directory)")
    run.add_argument("-f", "--file", type=Path, metavar="FILE",
                     help="the Coopfile (default: Coopfile, coop.yaml or coop.toml in DIR)")
    run.add_argument("--network", choices=("none", "host"),
                     help="network mode (default: the Coopfile's, else host)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...",
                     help="the command and its arguments (default: the Coopfile's agent)")

    init = sub.add_parser("init", help="write a commented Coopfile",
                          description=INIT_HELP, formatter_class=_formatter)
    init.add_argument("--agent", choices=("claude", "codex", "aider", "shell"), default="shell",
                      help="which agent the Coopfile starts (default: shell)")
    init.add_argument("--image", default="host", metavar="REF",
                      help="the base: host (default), dir:PATH, tar:PATH or an OCI reference")
    init.add_argument("-w", "--workspace", type=Path, metavar="DIR",
                      help="where to write it (default: the current directory)")
    init.add_argument("--force", action="store_true", help="replace an existing Coopfile")

    doctor = sub.add_parser("doctor", help="check that this machine can run sandboxes",
                            description=DOCTOR_HELP, formatter_class=_formatter)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")

    completion = sub.add_parser("completion", help="print a shell completion script",
                                description="examples:\n  eval \"$(coop completion bash)\"\n"
                                            "  coop completion fish > "
                                            "~/.config/fish/completions/coop.fish",
                                formatter_class=_formatter)
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "run":
        from coop.commands.run import run

        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return run(cmd, args.workspace, args.file, args.network)
    if args.command == "init":
        from coop.commands.init import init

        return init(args.workspace or Path.cwd(), args.agent, args.image, args.force,
                    quiet=args.quiet)
    if args.command == "doctor":
        from coop.commands.doctor import doctor

        return doctor(as_json=args.json)
    if args.command == "completion":
        from coop.commands.completion import completion_script

        sys.stdout.write(completion_script(args.shell, parser))
        return 0
    parser.print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser)
    except CoopError as exc:
        print(f"coop: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        if args.verbose or os.environ.get("COOP_DEBUG"):
            raise
        import traceback

        last = traceback.format_exc().strip().splitlines()[-1]
        print(f"coop: internal error: {last}\nRun again with -v for the traceback, and "
              "please report it.", file=sys.stderr)
        return 1
