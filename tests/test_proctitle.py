"""What `ps`, `top` and `pgrep` call coop's processes: real daemons, supervisors and
sandboxes, read from /proc and `ps` on the host and from inside the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from coop.proctitle import KINDS, fit
from tests.helpers import User, wait_for
from tests.test_daemon import daemon_pid, ls, start


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def ps(pid: int, field: str) -> str:
    """What `ps -o FIELD -p PID` prints, exactly (no header, trailing newline dropped)."""
    out = subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True,
                         text=True, check=True).stdout
    return out.rstrip("\n")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def assert_named(pid: int, kind: str, title: str) -> None:
    assert comm(pid) == kind  # top, ps -o comm, pgrep KIND
    assert cmdline(pid) == title.encode() + b"\0"  # just the title, no NUL padding
    assert ps(pid, "comm") == kind
    assert ps(pid, "args") == title  # ps aux, pgrep -f


INSIDE = ("cat /proc/1/comm > /workspace/comm; cat /proc/1/cmdline > /workspace/cmdline; "
          "ps -o args= -p 1 > /workspace/ps; touch /workspace/done; exec sleep 1000")


def test_daemon_zygote_supervisor_and_sandbox_are_named(session_user: User) -> None:
    start(session_user, "sh", "-c", INSIDE, name="titled")
    ws = session_user.workspace
    wait_for(lambda: (ws / "done").exists(), timeout=30, what="the agent's report")
    daemon = daemon_pid(session_user)
    assert_named(daemon, "coop-daemon", "coop-daemon")
    [zygote] = children(daemon)
    assert_named(zygote, "coop-zygote", "coop-zygote")
    [session] = ls(session_user)
    supervisor = int(session["supervisor_pid"])  # type: ignore[call-overload]
    assert_named(supervisor, "coop-session", "coop-session titled")
    [outer] = children(supervisor)
    assert_named(outer, "coop-sandbox", "coop-sandbox titled")
    [init] = children(outer)
    assert_named(init, "coop-init", "coop-init titled")
    # PID 1 as the agent sees it: no host path of coop's virtualenv.
    assert (ws / "comm").read_text() == "coop-init\n"
    assert (ws / "cmdline").read_bytes() == b"coop-init titled\0"
    assert (ws / "ps").read_text() == "coop-init titled\n"


def test_coop_run_names_its_sandbox_init(user: User) -> None:
    result = user.coop("run", "--network", "none", "--", "sh", "-c",
                       "cat /proc/1/comm /proc/1/cmdline; echo; ps -o args= -p 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"coop-init\ncoop-init project\0\ncoop-init project\n"


TITLE_SCRIPT = """
import json, sys
from coop.proctitle import set_title
set_title(*json.load(sys.stdin))
print(open('/proc/self/comm').read().strip())
print(open('/proc/self/cmdline', 'rb').read().hex())
"""


def _titled(user: User, script_name: str, kind: str, name: str) -> tuple[str, bytes]:
    """Run a Python whose argv strings are just `./p SCRIPT_NAME` (so we know the room)
    and have it call set_title(KIND, NAME); returns its comm and cmdline after."""
    os.symlink(sys.executable, user.workspace / "p")
    (user.workspace / script_name).write_text(TITLE_SCRIPT)
    result = user.run(["./p", script_name], input=json.dumps([kind, name]).encode())
    assert result.returncode == 0, result.stderr
    new_comm, new_cmdline = result.stdout.decode().split()
    return new_comm, bytes.fromhex(new_cmdline)


def test_a_hostile_session_name_reaches_no_terminal(user: User) -> None:
    evil = "x\x1b]0;owned\x07\n\tname \u202e" + "y" * 1000
    script = "h" * 120 + ".py"  # room for a title of 3 + 1 + 123 bytes
    name, title = _titled(user, script, "coop-session", evil)
    assert name == "coop-session"
    assert title.startswith(b"coop-session x??0?owned???name??yyy")
    assert title.endswith(b"...\0") and len(title) == len("coop-session ") + 64 + 1
    assert all(0x21 <= c < 0x7f for c in title[len("coop-session "):-1])


def test_a_title_longer_than_the_command_line_is_shortened(user: User) -> None:
    script = "s" * 24 + ".py"
    room = len(f"./p {script}")  # the argv strings and their NULs, less the title's NUL
    name, title = _titled(user, script, "coop-session", "n" * 80)
    assert name == "coop-session"
    assert title == f"coop-session {'n' * (room - len('coop-session ...'))}...\0".encode()
    assert len(title) == room + 1


def test_no_room_leaves_the_command_line_alone(user: User) -> None:
    name, title = _titled(user, "t.py", "coop-init", "demo")  # "./p t.py": 8 bytes of room
    assert name == "coop-init"
    assert title == b"./p\0t.py\0"


def test_fit() -> None:
    assert fit("coop-session", "demo", 40) == "coop-session demo"
    assert fit("coop-session", "a-long-session-name", 24) == "coop-session a-long-s..."
    assert fit("coop-session", "a-long-session-name", 17) == "coop-session"
    assert fit("coop-session", "demo", 11) is None
    assert all(len(kind) <= 15 for kind in KINDS)  # the kernel's comm holds 15 bytes
