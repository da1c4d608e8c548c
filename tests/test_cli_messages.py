"""What a user sees from the session commands in the rough spots: `coop kill` asks first
(as the TUI and the page do), logs end with a newline, empty results say so, and an
unknown session name says which ones there are."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import COOP, User, crash_everything, spawn_on_pty, wait_for


def start(user: User, name: str, script: str) -> None:
    result = user.coop("-d", "-n", name, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr


def names(user: User) -> list[str]:
    result = user.coop("ls", "--json")
    assert result.returncode == 0, result.stderr
    return sorted(s["name"] for s in json.loads(result.stdout))


def test_kill_asks_on_the_terminal_and_keeps_the_session_on_no(session_user: User) -> None:
    start(session_user, "project", "echo x > $HOME/outside; exec sleep 1000")
    upper = session_user.coop_home / "data" / "sessions" / "project"
    wait_for(upper.exists, what="the session's upper dir")

    declined = spawn_on_pty(session_user, COOP + ["kill"])
    declined.read_until(b"[y/N]", timeout=30)
    assert b"Kill session project? Its sandbox stops and its upper dir is discarded" \
        in declined.output
    declined.write(b"n\r")
    assert declined.wait(timeout=30) == 1
    assert b"Nothing was killed." in declined.output
    assert names(session_user) == ["project"] and upper.exists()

    accepted = spawn_on_pty(session_user, COOP + ["kill", "project"])
    accepted.read_until(b"[y/N]", timeout=30)
    accepted.write(b"y\r")
    assert accepted.wait(timeout=60) == 0
    assert b"killed project" in accepted.output
    assert names(session_user) == [] and not upper.exists()


def test_kill_without_a_terminal_refuses_unless_forced(session_user: User) -> None:
    start(session_user, "project", "exec sleep 1000")
    for args in (["kill"], ["kill", "project"], ["kill", "--all"]):
        refused = session_user.coop(*args, stdin=subprocess.DEVNULL)
        assert refused.returncode == 2, (args, refused.stderr)
        assert b"no terminal to ask on" in refused.stderr
        assert b"Pass -f" in refused.stderr
        assert names(session_user) == ["project"]
    forced = session_user.coop("kill", "-f", stdin=subprocess.DEVNULL)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == b"killed project\n"
    assert names(session_user) == []


def test_kill_in_the_workspace_of_a_stopped_session_asks_about_it(session_user: User) -> None:
    start(session_user, "project", "echo x > $HOME/outside; exec sleep 1000")
    upper = session_user.coop_home / "data" / "sessions" / "project"
    wait_for(upper.exists, what="the session's upper dir")
    crash_everything(session_user)  # a reboot: the session is listed as stopped
    wait_for(lambda: names(session_user) == ["project"], what="the stopped session")

    asked = spawn_on_pty(session_user, COOP + ["kill"])
    asked.read_until(b"[y/N]", timeout=60)
    assert b"Kill session project?" in asked.output
    asked.write(b"y\r")
    assert asked.wait(timeout=60) == 0
    assert b"killed project" in asked.output
    assert names(session_user) == [] and not upper.exists()


def test_attaching_to_a_stopped_session_says_how_to_start_it(session_user: User) -> None:
    start(session_user, "project", "exec sleep 1000")
    crash_everything(session_user)
    wait_for(lambda: names(session_user) == ["project"], what="the stopped session")
    result = session_user.coop("attach", "project")
    assert result.returncode == 3
    assert b"session project is stopped" in result.stderr, result.stderr
    assert b"`coop start project`" in result.stderr and b"Did you mean" not in result.stderr


def test_status_prints_no_control_character_of_the_agents_command(session_user: User) -> None:
    hostile = "agent\x1b]0;owned\x07\x1b[2J"
    assert session_user.coop("-d", "--", hostile).returncode == 0
    wait_for(lambda: b"not-found" in session_user.coop("status").stdout,
             what="the agent found missing")
    shown = session_user.coop("status").stdout
    assert b"\x1b" not in shown and b"\x07" not in shown
    assert b"agent?]0;owned??[2J" in shown


def test_kill_all_asks_once_naming_every_session(session_user: User) -> None:
    start(session_user, "one", "exec sleep 1000")
    start(session_user, "two", "exec sleep 1000")
    asked = spawn_on_pty(session_user, COOP + ["kill", "--all"])
    asked.read_until(b"[y/N]", timeout=30)
    assert bytes(asked.output).count(b"[y/N]") == 1
    assert b"Kill sessions one, two?" in asked.output
    asked.write(b"y\r")
    assert asked.wait(timeout=60) == 0
    assert b"killed one" in asked.output and b"killed two" in asked.output
    assert names(session_user) == []


def test_kill_all_with_no_sessions_says_so(session_user: User) -> None:
    for args in (["kill", "--all"], ["kill", "--all", "-f"]):
        result = session_user.coop(*args, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"No sessions to kill.\n"


def test_logs_end_with_exactly_one_newline(session_user: User) -> None:
    start(session_user, "prompt", "printf 'ready> '; exec sleep 1000")
    start(session_user, "lines", "printf 'one\\ntwo\\n'; exec sleep 1000")
    wait_for(lambda: b"ready>" in session_user.coop("logs", "prompt").stdout, what="output")
    wait_for(lambda: b"two" in session_user.coop("logs", "lines").stdout, what="output")
    assert session_user.coop("logs", "prompt").stdout == b"ready> \n"
    assert session_user.coop("logs", "lines").stdout == b"one\ntwo\n"


def test_logs_network_with_no_denials_says_so(session_user: User) -> None:
    start(session_user, "quiet", "exec sleep 1000")
    result = session_user.coop("logs", "--network", "quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"No network requests were refused in session quiet.\n"
    here = session_user.coop("logs", "--network")  # the workspace's session
    assert here.stdout == b"No network requests were refused in session quiet.\n"


def test_attach_to_an_unknown_name_names_the_sessions(session_user: User) -> None:
    none = session_user.coop("attach", "myapp")
    assert none.returncode == 3
    assert b"there is no session named myapp: there are none." in none.stderr
    start(session_user, "myapp", "exec sleep 1000")
    start(session_user, "other", "exec sleep 1000")
    typo = session_user.coop("attach", "myap")
    assert typo.returncode == 3
    assert b"there is no session named myap. Did you mean myapp?" in typo.stderr
    unknown = session_user.coop("attach", "zzz")
    assert unknown.returncode == 3
    assert b"the sessions are myapp, other (`coop ls` lists them)" in unknown.stderr
