"""Finding a command in a sandbox before it is exec'd, and saying how to get it there.

`coop -- claude` on a machine without Claude Code used to start the sandbox, exec, fail
with 127 and restart the agent until crash-loop detection gave up. Init now looks the
command up first, the way `execvp` will (`locate`), and refuses the spawn with the exit
code a shell would give (127: not found, 126: found but not executable); the supervisor
and `coop run` then print `explain`: what is missing, the sandbox's PATH, and how to
install it for this Coopfile's base.
"""

from __future__ import annotations

import os

from coop.errors import SandboxError

NOT_FOUND = 127
NOT_EXECUTABLE = 126
INSTALL: dict[str, tuple[str, str, str]] = {
    # command: (what it is, package manager, package)
    "claude": ("Claude Code", "npm", "@anthropic-ai/claude-code"),
    "codex": ("Codex", "npm", "@openai/codex"),
    "gemini": ("Gemini CLI", "npm", "@google/gemini-cli"),
    "aider": ("Aider", "pip", "aider-chat"),
}


class CommandMissing(SandboxError):
    """Init refused to spawn a command it cannot find or run; `exit_code` is 127 or 126."""

    def __init__(self, name: str, code: int, found: str = "") -> None:
        super().__init__(problem(name, code, found) + ".")
        self.name = name
        self.code = code
        self.found = found
        self.exit_code = code

    def explained(self, path: str, image: str) -> SandboxError:
        """The same error, with where coop looked and how to install the command."""
        lines = explain(self.name, self.code, path, image, self.found)
        error = SandboxError(lines[0], "\n".join(lines[1:]))
        error.exit_code = self.code
        return error


def locate(name: str, path: str, cwd: str) -> tuple[int, str]:
    """`(0, file)` when exec would find an executable `name`; `(127, "")` when there is no
    such file; `(126, file)` when there is one but it is not an executable file.

    Like `execvp`: a name with a slash is taken as is (relative to `cwd`); otherwise each
    PATH entry is tried in turn (an empty entry means `cwd`) and one that is not
    executable is skipped, but remembered.
    """
    if "/" in name:
        candidates = [os.path.normpath(os.path.join(cwd, name))]
    else:
        candidates = [os.path.normpath(os.path.join(cwd, entry or ".", name))
                      for entry in path.split(":")]
    denied = ""
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return 0, candidate
        denied = denied or candidate
    return (NOT_EXECUTABLE, denied) if denied else (NOT_FOUND, "")


def problem(name: str, code: int, found: str = "") -> str:
    """One line: what is wrong with `name`."""
    if code == NOT_FOUND:
        return f"{name}: command not found in the sandbox"
    where = f" ({found})" if found and found != name else ""
    return f"{name}: not an executable file in the sandbox{where}"


def explain(name: str, code: int, path: str, image: str, found: str = "") -> list[str]:
    """The lines a user reads: the problem, where coop looked, and how to install it."""
    lines = [problem(name, code, found) + "."]
    if "/" not in name:
        entries = [entry or "." for entry in path.split(":")]
        lines.append(f"It looked in the sandbox's PATH: {' '.join(entries)}")
    if code == NOT_EXECUTABLE:
        lines.append("Make it executable (chmod +x), or name the right file.")
        return lines
    known = INSTALL.get(os.path.basename(name))
    if image == "host":
        lines.append("The sandbox sees this machine's system directories but not your home.")
        if known:
            what, manager, package = known
            command = "npm install -g" if manager == "npm" else "pip install"
            lines.append(f"Install {what} on this machine, outside your home: "
                         f"`sudo {command} {package}`")
        else:
            lines.append(f"Install {name} on this machine, into one of those directories.")
    else:
        lines.append(f"The image ({image}) does not have it: add it to the Coopfile's "
                     "`packages`, then start a new session (it is built first):")
        if known:
            _, manager, package = known
            lines.append(f'  packages: {{{manager}: ["{package}"]}}')
            if manager == "npm":
                lines.append("  (npm needs an image with Node.js, e.g. node:22-bookworm)")
        else:
            lines.append("  packages: {apt: [...]}   (or apk, dnf, pacman, pip, npm)")
    return lines
