"""Which session a command means, and what to say when there is none by that name.

The daemon resolves names for most requests; the CLI does it too where it must know the
name before it asks the daemon anything (`coop kill` asks the user first), by the same
rules: a name, else a workspace path, else the cwd's session, else the only one.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from coop.errors import CoopError
from coop.ipc.client import RequestError, call
from coop.paths import coop_paths


def resolve_session(known: list[dict[str, Any]], ref: str | None, cwd: str) -> str:
    """The name of the session `ref` (a name or a workspace path; None: the cwd's, else the
    only one) means, by the daemon's rules, among `known` (an `ls` reply's sessions)."""
    names = [str(s["name"]) for s in known]
    if ref in names:
        return str(ref)
    running = [s for s in known if s.get("state") != "stopped"]
    path = os.path.realpath(ref or cwd)
    for candidate in running + [s for s in known if s.get("state") == "stopped"]:
        if candidate.get("workspace") == path:
            return str(candidate["name"])
    if ref:
        raise RequestError("SESSION_NOT_FOUND", unknown_session(ref, names))
    if len(running) == 1:
        return str(running[0]["name"])
    if not known:
        raise RequestError("SESSION_NOT_FOUND", "there are no sessions.")
    raise RequestError("SESSION_NOT_FOUND", f"several sessions run; name one ({', '.join(names)}).")


def unknown_session(ref: str, names: list[str]) -> str:
    """There is no session `ref`: the names there are (a few), or the one it is close to."""
    what = f"there is no session named {ref}"
    if os.path.isdir(ref):
        what += f", nor one working in {os.path.realpath(ref)}"
    if not names:
        return f"{what}: there are none. `coop` in a project starts one."
    close = difflib.get_close_matches(ref, names, n=1)
    if close:
        return f"{what}. Did you mean {close[0]}? (`coop ls` lists them)"
    if len(names) <= 5:
        return f"{what}; the sessions are {', '.join(names)} (`coop ls` lists them)."
    return f"{what}; `coop ls` lists the {len(names)} sessions."


def explained(exc: RequestError, ref: str | None) -> RequestError:
    """The daemon's "no session named or working in 'x'", with the names there are."""
    if exc.code != "SESSION_NOT_FOUND" or not ref:
        return exc
    try:
        known = call(coop_paths(), {"cmd": "ls", "fresh": False})["sessions"]
    except CoopError:
        return exc
    names = [str(s["name"]) for s in known]
    if ref in names:
        return exc  # it exists (it is ending, say): the daemon's own words are the right ones
    return RequestError(exc.code, unknown_session(ref, names))
