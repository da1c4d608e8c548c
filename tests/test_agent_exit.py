"""An agent that is not installed, or that ends: what the user's terminal shows, with which
exit code, and that nothing is restarted that would only fail again.

Real daemons, supervisors and sandboxes, driven through `coop` on a real PTY as an
unprivileged user. The terminal is wide so that no message wraps on the screen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from coop.config.coopfile import DEFAULT_PATH
from tests.helpers import COOP, PtyRun, User, screen_of, spawn_on_pty, wait_for
from tests.test_daemon import logs, start

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


def test_missing_agent_is_reported_and_not_restarted(session_user: User) -> None:
    client = coop_on_pty(session_user, "--", "nosuchagent", "--flag")
    assert client.wait(timeout=60) == 127
    screen = shown(client)
    assert "[coop] nosuchagent: command not found in the sandbox." in screen
    assert ("It looked in the sandbox's PATH: /usr/local/sbin /usr/local/bin /usr/sbin "
            "/usr/bin /sbin /bin /run/coop/bin") in screen
    assert "Install nosuchagent on this machine, into one of those directories." in screen
    assert "[project: the agent did not start: nosuchagent: command not found in the " \
           "sandbox. Not restarting it" in screen
    [session] = sessions(session_user)
    assert session["state"] == "not-found"
    assert "nosuchagent: command not found" in str(session["reason"])
    assert "not-found" in session_user.coop("ls").stdout.decode()
    assert "session: project (not-found: the agent did not start: nosuchagent: command " \
           "not found" in session_user.coop("status").stdout.decode()
    text = logs(session_user)
    assert text.count("command not found in the sandbox") == 1  # started once, never again
    assert "; restarting it" not in text
    again = coop_on_pty(session_user, "attach")  # a dead agent: no terminal left hanging
    assert again.wait(timeout=60) == 127
    assert "Not restarting it" in shown(again)


def test_running_coop_again_replaces_a_session_whose_agent_never_started(
        session_user: User) -> None:
    first = coop_on_pty(session_user, "--", "nosuchagent")
    assert first.wait(timeout=60) == 127
    second = coop_on_pty(session_user, "--", "sh", "-c", "echo now-it-runs; exec sleep 1000")
    second.read_until(b"now-it-runs", timeout=60)
    second.write(b"\x1d")
    assert second.wait(timeout=60) == 0
    assert b"never started; starting it afresh" in second.output
    [session] = sessions(session_user)
    assert session["state"] == "running" and session["name"] == "project"


def test_running_coop_again_keeps_a_session_whose_agent_ran(session_user: User) -> None:
    """A first run that exits 127 at once is not restarted, but it ran: what it wrote
    outside the workspace is not discarded by the next `coop`."""
    first = coop_on_pty(session_user, "--", "sh", "-c", "echo work > /tmp/notes; exit 127")
    assert first.wait(timeout=60) == 127
    assert sessions(session_user)[0]["state"] == "not-found"
    second = coop_on_pty(session_user, "--", "sh")
    second.wait(timeout=60)
    assert b"starting it afresh" not in second.output
    kept = session_user.coop("shell", "-c", "cat /tmp/notes", stdin=subprocess.DEVNULL)
    assert b"work" in kept.stdout, kept


def test_claude_missing_says_how_to_install_it(session_user: User) -> None:
    if shutil.which("claude", path=DEFAULT_PATH):
        pytest.skip("Claude Code is installed on this machine")
    client = coop_on_pty(session_user, "--", "claude")
    assert client.wait(timeout=60) == 127
    screen = shown(client)
    assert "claude: command not found in the sandbox." in screen
    assert "Install Claude Code on this machine, outside your home: " \
           "`sudo npm install -g @anthropic-ai/claude-code`" in screen


def test_agent_that_exits_127_at_its_first_start_is_not_restarted(session_user: User) -> None:
    """Found and exec'd, but what it runs is missing (as a script whose interpreter is)."""
    client = coop_on_pty(session_user, "--", "sh", "-c",
                         "echo 'env: node: No such file or directory'; exit 127")
    assert client.wait(timeout=60) == 127
    screen = shown(client)
    assert "sh exited with code 127 the first time it ran: a command it runs was not " \
           "found (its own message is above); not restarting it." in screen
    assert sessions(session_user)[0]["state"] == "not-found"
    assert logs(session_user).count("No such file or directory") == 1


def test_agent_exiting_while_a_shell_runs_ends_the_attach(session_user: User) -> None:
    """agent.restart: never; the session stays for its shell, the terminal does not."""
    write_coopfile(session_user, "agent: {restart: never}\n")
    start(session_user, "sh", "-c", "echo agent-up; read line; exit 5")
    shell = coop_on_pty(session_user, "shell")
    shell.read_until(b"$", timeout=60)
    client = coop_on_pty(session_user, "attach")
    client.read_until(b"agent-up", timeout=60)
    client.write(b"bye\r")
    assert client.wait(timeout=60) == 5
    assert "[project: the agent exited with code 5; not restarting it (agent.restart: never)." \
           " Its shells keep running; `coop restart` starts it again]" in shown(client)
    [session] = sessions(session_user)
    assert session["state"] == "exited"
    shell.write(b"exit\r")
    assert shell.wait(timeout=60) == 0
    wait_for(lambda: not sessions(session_user), timeout=60, what="the session to end")


def test_agent_exiting_alone_ends_the_session_and_the_attach(session_user: User) -> None:
    client = coop_on_pty(session_user, "--", "sh", "-c", "echo agent-up; read line; exit 0")
    client.read_until(b"agent-up", timeout=60)
    client.write(b"done\r")
    assert client.wait(timeout=60) == 0
    assert "[project: the agent exited with code 0; not restarting it (agent.restart: " \
           "on-failure, and it did not fail); the session ended]" in shown(client)


def test_crash_loop_ends_the_attach_with_the_reason(session_user: User) -> None:
    write_coopfile(session_user, "agent: {restart: always, restart_delay_ms: 50}\n")
    client = coop_on_pty(session_user, "--", "sh", "-c", "echo boom; exit 1")
    assert client.wait(timeout=60) == 1
    assert "[project: the agent exited 3 times within 5 s of starting; not restarting it. " \
           "Fix it, then `coop restart`.]" in shown(client)
    assert sessions(session_user)[0]["state"] == "crashed"


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
