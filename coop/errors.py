"""The error hierarchy: every error a user can see carries its message and exit code.

The CLI prints `CoopError`s as one readable paragraph and exits with `exit_code`
(SPEC §12: 1 error, 2 usage, 3 session not found, 4 daemon failed, 5 base/build,
6 tunnel, 130 interrupted). Anything else is a bug and gets a traceback only with `-v`.
"""

from __future__ import annotations


class CoopError(Exception):
    """An error with a user-facing message; `hint` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The paragraph the CLI prints."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class UsageError(CoopError):
    """The command line itself is wrong."""

    exit_code = 2


class ConfigError(CoopError):
    """A Coopfile or the global config is invalid; the message names file, line and key."""

    exit_code = 1


class SandboxError(CoopError):
    """The sandbox could not be built; never fall back to running unsandboxed."""

    exit_code = 1


class BaseError(CoopError):
    """A base is missing or could not be built."""

    exit_code = 5
