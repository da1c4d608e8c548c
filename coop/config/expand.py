"""`$VAR` / `${VAR}` expansion of Coopfile `env` values at session start.

Expanded values are secrets (API keys): they are returned to the caller, who hands them to
the sandbox's environment and nowhere else. Warnings name the variable, never a value.
`$$` is a literal `$`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_value(value: str, environ: Mapping[str, str], missing: set[str]) -> str:
    """Expand one value; names of unset variables are added to `missing`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            return "$"
        if name not in environ:
            missing.add(name)
            return ""
        return environ[name]

    return _VAR.sub(substitute, value)


def expand_env(env: Mapping[str, str],
               environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Expand every value; returns the result and one warning per unset variable."""
    missing: set[str] = set()
    out = {key: expand_value(value, environ, missing) for key, value in env.items()}
    warnings = [f"${name} is not set on the host; it expands to an empty string."
                for name in sorted(missing)]
    return out, warnings
