"""What to say when no session goes by the name a user typed.

The daemon resolves every session reference itself (a name, a workspace path, the cwd's
session, the only one); this is just its wording for the miss, with the names there are, so
that `coop attach typo` points somewhere useful.
"""

from __future__ import annotations

import difflib


def unknown_session(ref: str, names: list[str], is_dir: bool = False) -> str:
    """There is no session `ref`: the one it is close to, or the names there are (a few)."""
    what = f"there is no session named {ref}"
    if is_dir:
        what += f", nor one working in {ref}"
    if not names:
        return f"{what}: there are none. `coop` in a project starts one."
    close = difflib.get_close_matches(ref, [n for n in names if n != ref], n=1)
    if close:
        return f"{what}. Did you mean {close[0]}? (`coop ls` lists them)"
    if len(names) <= 5:
        return f"{what}; the sessions are {', '.join(sorted(names))} (`coop ls` lists them)."
    return f"{what}; `coop ls` lists the {len(names)} sessions."


def printable(text: str) -> str:
    """`text` with every control character shown as `?`: for words coop prints that quote
    what the agent controls (its command, its PATH, from a Coopfile it can write)."""
    return "".join(c if c.isprintable() else "?" for c in text)
