"""`coop kill`: killing discards a session's upper dir (every file it wrote outside the
workspace), so it asks first on the terminal, as the TUI and the page do; `-f` does not
ask, and without a terminal to ask on it refuses rather than guess."""

from __future__ import annotations

import os
import sys
from typing import Any

from coop.errors import UsageError
from coop.ipc.client import call
from coop.paths import coop_paths


def kill(sessions: list[str], all_sessions: bool, force: bool) -> int:
    """Ask, then kill gracefully; with `-f`, kill at once without asking."""
    paths = coop_paths()
    if force:
        message: dict[str, Any] = {"cmd": "kill", "sessions": sessions or None,
                                   "all": all_sessions, "force": True, "cwd": os.getcwd()}
    else:
        names = call(paths, {"cmd": "kill_targets", "sessions": sessions or None,
                             "all": all_sessions, "cwd": os.getcwd()})["sessions"]
        if not names:
            print("No sessions to kill.")
            return 0
        again = "coop kill --all -f" if all_sessions else " ".join(["coop kill -f", *sessions])
        if not _confirm_kill(names, again):
            print("Nothing was killed.", file=sys.stderr)
            return 1
        # The names asked about, not `all`: a session started meanwhile was not asked about.
        message = {"cmd": "kill", "sessions": names, "force": False}
    killed = call(paths, message).get("killed", [])
    if not killed and all_sessions:
        print("No sessions to kill.")
    for name in killed:
        print(f"killed {name}")
    return 0


def _confirm_kill(names: list[str], again: str) -> bool:
    """The TUI's question, on the terminal; refuses (exit 2) when stdin is not one."""
    if len(names) == 1:
        question = (f"Kill session {names[0]}? Its sandbox stops and its upper dir is "
                    "discarded (the workspace and volumes stay).")
    else:
        question = (f"Kill sessions {', '.join(names)}? Their sandboxes stop and their upper "
                    "dirs are discarded (the workspaces and volumes stay).")
    if not sys.stdin.isatty():
        which = "these sessions" if len(names) > 1 else f"session {names[0]}"
        raise UsageError(f"not killing {which} without asking, and there is no terminal "
                         "to ask on.", f"Pass -f to kill without asking: `{again}`")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stderr.write("\n")  # EOF (Ctrl+D): the next prompt on a line of its own
    return answer.strip().lower() in ("y", "yes")
