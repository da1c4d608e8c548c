"""An agent that is not installed, or that ends: what the user's terminal shows, with which
exit code, and that nothing is restarted that would only fail again.

Real daemons, supervisors and sandboxes, driven through `coop` on a real PTY as an
unprivileged user. The terminal is wide so that no message wraps on the screen.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import COOP, PtyRun, User, screen_of, spawn_on_pty

ROWS, COLS = 30, 240


def coop_on_pty(user: User, *args: str) -> PtyRun:
    return spawn_on_pty(user, COOP + list(args), size=(ROWS, COLS))


def shown(client: PtyRun) -> str:
    """What the terminal shows once the client has exited."""
    return "\n".join(screen_of(bytes(client.output), ROWS, COLS))


def sessions(user: User) -> list[dict[str, object]]:
    result = user.coop("ls", "--json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def write_coopfile(user: User, text: str) -> None:
    (user.workspace / "Coopfile").write_text(text)
    user.chown(user.workspace)


def test_coop_run_missing_command_says_where_it_looked(user: User) -> None:
    result = user.coop("run", "--", "nosuchcmd", "--version")
    assert result.returncode == 127
    assert result.stderr.decode().splitlines() == [
        "coop: nosuchcmd: command not found in the sandbox.",
        "It looked in the sandbox's PATH: /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin "
        "/sbin /bin",
        "The sandbox sees this machine's system directories but not your home.",
        "Install nosuchcmd on this machine, into one of those directories.",
    ]
    client = spawn_on_pty(user, COOP + ["run", "--", "nosuchcmd"], size=(ROWS, COLS))
    assert client.wait(timeout=60) == 127
    assert "coop: nosuchcmd: command not found in the sandbox." in shown(client)


def test_coop_run_file_that_is_not_executable_exits_126(user: User) -> None:
    (user.workspace / "agent.sh").write_text("echo hi\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "./agent.sh")
    assert result.returncode == 126
    assert result.stderr.decode().splitlines()[:2] == [
        "coop: ./agent.sh: not an executable file in the sandbox (/workspace/agent.sh).",
        "Make it executable (chmod +x), or name the right file."]


def test_missing_agent_in_an_image_points_at_packages(user: User, world_tmp: Path) -> None:
    rootfs = world_tmp / "rootfs"
    for sub in ("bin", "etc", "tmp", "usr/bin"):  # a base without the agent (nor anything)
        (rootfs / sub).mkdir(parents=True)
    user.chown(rootfs)
    write_coopfile(user, f"image: dir:{rootfs}\n")
    result = user.coop("run", "--", "codex")
    assert result.returncode == 127
    err = result.stderr.decode()
    assert "coop: codex: command not found in the sandbox." in err
    assert f"The image (dir:{rootfs}) does not have it: add it to the Coopfile's " \
           "`packages`, then start a new session (it is built first):" in err
    assert '  packages: {npm: ["@openai/codex"]}' in err
