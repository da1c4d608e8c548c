"""The daemon and its sessions, driven through the real CLI as an unprivileged user.

Each test starts real daemons (spawned by the CLI the way a user's first `coop` does),
real supervisors, sandboxes and PTYs. Terminals are real PTYs; what a user would see is
checked by feeding the client's output into a reference terminal emulator.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from coop.ipc.framing import encode, encode_control, encode_data
from tests.helpers import (
    COOP,
    FULLSCREEN_APP,
    PtyRun,
    User,
    coop_processes,
    crash_everything,
    screen_of,
    spawn_on_pty,
    wait_for,
)

ROWS, COLS = 30, 100


def start(user: User, *cmd: str, name: str | None = None) -> str:
    args = ["-d"] + (["-n", name] if name else []) + ["--", *cmd]
    result = user.coop(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


def ls(user: User) -> list[dict[str, object]]:
    result = user.coop("ls", "--json")
    assert result.returncode == 0, result.stderr
    sessions: list[dict[str, object]] = json.loads(result.stdout)
    return sessions


def logs(user: User, *extra: str) -> str:
    return user.coop("logs", *extra).stdout.decode()


def daemon_pid(user: User) -> int:
    return int((user.coop_home / "run" / "daemon.pid").read_text())


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def attach(user: User, *args: str) -> PtyRun:
    return spawn_on_pty(user, COOP + ["attach", *args], size=(ROWS, COLS))


def test_detached_session_runs_and_lists(session_user: User) -> None:
    name = start(session_user, "sh", "-c", "echo hello from the agent; exec sleep 1000")
    assert name == "project"
    wait_for(lambda: "hello from the agent" in logs(session_user), what="agent output")
    [session] = ls(session_user)
    assert session["name"] == "project"
    assert session["workspace"] == str(session_user.workspace)
    assert session["state"] == "running"
    plain = session_user.coop("ls").stdout.decode()
    assert plain.splitlines()[0].split() == ["SESSION", "WORKSPACE", "STATE", "PTYS",
                                             "CLIENTS", "AGE"]


def test_two_clients_share_one_pty(session_user: User) -> None:
    start(session_user, "sh")
    one = attach(session_user)
    two = attach(session_user)
    one.read_until(b"$")
    two.read_until(b"$")
    one.write(b"echo from-$((40+2))\r")
    one.read_until(b"from-42")
    two.read_until(b"from-42")
    two.write(b"echo other-$((6*7))\r")
    one.read_until(b"other-42")
    two.read_until(b"other-42")
    [session] = ls(session_user)
    assert session["ptys"][0]["clients"] == {"local": 2}  # type: ignore[index]
    for client in (one, two):
        client.write(b"\x1d")
        assert client.wait() == 0


def _app(user: User) -> None:
    (user.workspace / "app.py").write_text(FULLSCREEN_APP)
    user.chown(user.workspace)
    start(user, "python3", "/workspace/app.py")


def _screen_after_attach(user: User, last_line: bytes) -> tuple[list[str], PtyRun]:
    """The screen once the repaint has reached `last_line`, the app's bottom line (the
    rows above it come first)."""
    client = attach(user)
    client.read_until(last_line)
    return screen_of(bytes(client.output), ROWS, COLS), client


def test_reattach_repaints_the_same_screen(session_user: User) -> None:
    _app(session_user)
    first, client = _screen_after_attach(session_user, b"lines typed: 0")
    assert first[0] == "  coop test app"
    assert first[4] == "         red green bold 中文"
    assert first[9] == "lines typed: 0"
    client.write(b"hello\r")
    client.read_until(b"(last: hello)")
    client.write(b"\x1d")
    assert client.wait() == 0
    # The terminal was restored: the alternate screen left, the modes reset.
    assert bytes(client.output).rstrip().endswith(b"to come back]")
    second, again = _screen_after_attach(session_user, b"lines typed: 1 (last: hello)")
    assert second[:9] == first[:9]
    assert second[9] == "lines typed: 1 (last: hello)"
    again.write(b"\x1d")
    again.wait()


def test_killing_the_daemon_leaves_sessions_and_their_screens(session_user: User) -> None:
    _app(session_user)
    before, client = _screen_after_attach(session_user, b"lines typed: 0")
    old_daemon = daemon_pid(session_user)
    os.kill(old_daemon, signal.SIGKILL)
    # The attached client is served by the session's supervisor: it keeps working.
    client.write(b"still here\r")
    client.read_until(b"(last: still here)")
    client.write(b"\x1d")
    client.wait()
    # A new daemon, spawned and adopting.
    after, again = _screen_after_attach(session_user, b"lines typed: 1 (last: still here)")
    assert daemon_pid(session_user) != old_daemon
    assert after[:9] == before[:9]  # same pid line: the agent never noticed
    assert after[9] == "lines typed: 1 (last: still here)"
    again.write(b"\x1d")
    again.wait()


def test_agent_restarts_and_clients_stay_attached(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text(
        "agent: {restart: on-failure, restart_delay_ms: 100}\n")
    session_user.chown(session_user.workspace)
    start(session_user, "sh", "-c", "echo agent-started; read line; exit 3")
    client = attach(session_user)
    client.read_until(b"agent-started")
    client.write(b"x\r")
    client.read_until(b"restarting it")
    client.read_count(b"agent-started", 2)
    client.settle()
    assert bytes(client.output).count(b"agent-started") == 2
    client.write(b"\x1d")
    assert client.wait() == 0


def test_crash_loop_stops_with_a_message(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text(
        "agent: {restart: always, restart_delay_ms: 50}\n")
    session_user.chown(session_user.workspace)
    start(session_user, "sh", "-c", "echo boom; exit 1")
    wait_for(lambda: ls(session_user)[0]["state"] == "crashed", what="crash loop detection")
    text = logs(session_user)
    assert text.count("boom") == 3
    assert "the agent exited 3 times within 5 s of starting; not restarting it." in text


def test_shell_joins_the_agents_namespaces(session_user: User) -> None:
    start(session_user, "sh", "-c", "echo made-by-agent > /tmp/agent-file; "
                                    "exec sleep 1234")
    wait_for(lambda: ls(session_user)[0]["ptys"][0]["alive"], what="agent")  # type: ignore[index]
    client = spawn_on_pty(session_user, COOP + ["shell", "-c",
                                                "cat /tmp/agent-file; ps -eo args; hostname"],
                          size=(ROWS, COLS))
    client.wait()
    output = bytes(client.output)
    assert b"made-by-agent" in output
    assert b"sleep 1234" in output
    assert b"project" in output


def test_shell_takes_its_input_from_dev_null_or_a_file(session_user: User,
                                                        world_tmp: Path) -> None:
    start(session_user, "sh", "-c", "exec sleep 1234")
    quiet = session_user.coop("shell", "-c", "echo from-the-shell", stdin=subprocess.DEVNULL)
    assert quiet.returncode == 0, quiet.stderr
    assert b"from-the-shell" in quiet.stdout
    typed = world_tmp / "typed"
    typed.write_text("hello\n")
    with typed.open("rb") as given:
        read = session_user.coop("shell", "-c", "read line; echo got:$line", stdin=given.fileno())
    assert read.returncode == 0, read.stderr
    assert b"got:hello" in read.stdout


def test_logs_lines_and_raw(session_user: User) -> None:
    start(session_user, "sh", "-c",
          "for i in 1 2 3 4 5; do printf '\\033[31mline %s\\033[0m\\n' $i; done; "
          "exec sleep 1000")
    wait_for(lambda: "line 5" in logs(session_user), what="output")
    assert logs(session_user, "-n", "2").split("\n")[:2] == ["line 4", "line 5"]
    raw = session_user.coop("logs", "--raw", "-n", "1").stdout
    assert raw.startswith(b"\x1b[31mline 5\x1b[0m")


def test_kill_removes_the_upper_dir_and_keeps_volumes_and_workspace(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text("mounts: ['cache:/cache']\n")
    session_user.chown(session_user.workspace)
    start(session_user, "sh", "-c", "echo v > /cache/kept; echo w > /workspace/kept; "
                                    "echo u > /tmp/gone; echo h > ~/gone; exec sleep 1000")
    data = session_user.coop_home / "data"
    wait_for(lambda: (session_user.workspace / "kept").exists(), what="agent writes")
    upper = data / "sessions" / "project"
    assert upper.exists()
    result = session_user.coop("kill", "-f")  # without a terminal to ask on
    assert result.returncode == 0 and b"killed project" in result.stdout
    assert not upper.exists()
    assert (data / "volumes" / "cache" / "kept").read_text() == "v\n"
    assert (session_user.workspace / "kept").read_text() == "w\n"
    assert ls(session_user) == []


def test_unknown_session_exits_3(session_user: User) -> None:
    result = session_user.coop("attach", "nope")
    assert result.returncode == 3
    assert b"there is no session named nope" in result.stderr


def test_ten_clients_at_once_start_one_daemon(session_user: User) -> None:
    procs = [session_user.popen(COOP + ["ls"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(10)]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    daemon = daemon_pid(session_user)
    ours = coop_processes(session_user)  # this test's coop only, by its COOP_HOME
    # The daemon of the pid file, and its zygote (its only child): no other.
    children = [pid for pid, (parent, _) in ours.items() if parent == daemon]
    assert len(children) == 1, ours
    assert {pid: argv for pid, (_, argv) in ours.items()} == \
        {daemon: ["coop-daemon"], children[0]: ["coop-zygote"]}


SLOW_START = """
import os, time
if b"coop.daemon" in open("/proc/self/cmdline", "rb").read():
    time.sleep(float(os.environ["COOP_TEST_DAEMON_DELAY"]))  # a loaded machine
    open(os.environ["COOP_TEST_DAEMON_SLEPT"], "w").close()
"""


def test_a_daemon_slow_to_start_is_waited_for(session_user: User, world_tmp: Path) -> None:
    from coop.ipc.client import SPAWN_WAIT

    slow = world_tmp / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_START)
    os.chmod(slow, 0o755)
    slept = session_user.home / "daemon-slept"
    # A client used to give up at 2.5 s.
    env = session_user.env(COOP_TEST_DAEMON_DELAY="5", COOP_TEST_DAEMON_SLEPT=str(slept))
    env["PYTHONPATH"] = f"{slow}:{env['PYTHONPATH']}"
    result = session_user.coop("ls", env=env, timeout=SPAWN_WAIT + 60)
    assert result.returncode == 0, result.stderr
    assert slept.exists()  # the daemon that answered is the one that was slow to start
    assert result.stdout.startswith(b"No sessions"), result.stdout


def test_a_daemon_that_dies_at_start_is_reported_at_once(session_user: User,
                                                         world_tmp: Path) -> None:
    broken = world_tmp / "broken-start"
    broken.mkdir()
    (broken / "sitecustomize.py").write_text(
        'if b"coop.daemon" in open("/proc/self/cmdline", "rb").read():\n'
        '    raise SystemExit("cannot start")\n')
    os.chmod(broken, 0o755)
    env = session_user.env()
    env["PYTHONPATH"] = f"{broken}:{env['PYTHONPATH']}"
    result = session_user.coop("ls", env=env)
    assert result.returncode == 4
    assert b"the daemon exited as it started" in result.stderr, result.stderr
    assert str(session_user.coop_home / "state" / "daemon.log").encode() in result.stderr


def test_stale_socket_is_replaced(session_user: User) -> None:
    session_user.coop("ls")
    sock = session_user.coop_home / "run" / "daemon.sock"
    daemon = daemon_pid(session_user)
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not _alive(daemon), what="the daemon to die")
    assert sock.exists()  # a dead daemon leaves its socket behind
    result = session_user.coop("daemon", "status")
    assert result.returncode == 1  # status does not start one
    assert session_user.coop("ls").returncode == 0
    assert session_user.coop("daemon", "status").stdout.startswith(b"running")


def test_idle_daemon_exits_and_removes_its_socket(session_user: User) -> None:
    session_user.extra_env["COOP_DAEMON_IDLE_TIMEOUT"] = "1"
    session_user.coop("ls")
    sock = session_user.coop_home / "run" / "daemon.sock"
    assert sock.exists()
    wait_for(lambda: not sock.exists(), what="idle exit")


def test_graceful_stop_leaves_sessions_running(session_user: User) -> None:
    start(session_user, "sh", "-c", "exec sleep 1000")
    old = json.loads(session_user.coop("status", "--json").stdout)["daemon"]["pid"]
    result = session_user.coop("daemon", "stop")
    assert b"sessions keep running" in result.stdout
    # When it says stopped, it has: the next command meets a new daemon, not a dying one.
    stat = Path(f"/proc/{old}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited
    assert not (session_user.coop_home / "run" / "daemon.sock").exists()
    [session] = ls(session_user)  # a new daemon adopts it
    assert session["state"] == "running"
    assert json.loads(session_user.coop("status", "--json").stdout)["daemon"]["pid"] != old


def test_coop_notify_marks_the_session_waiting(session_user: User) -> None:
    start(session_user, "sh", "-c", "sleep 0.5; coop-notify 'needs approval'; exec sleep 1000")
    wait_for(lambda: ls(session_user)[0]["ptys"][0]["waiting"],  # type: ignore[index]
             what="waiting marker")
    agent = ls(session_user)[0]["ptys"][0]  # type: ignore[index]
    assert agent["notified"] == "needs approval"
    assert "(waiting)" in session_user.coop("ls").stdout.decode()


def test_events_stream(session_user: User) -> None:
    session_user.coop("ls")
    listener = session_user.popen([COOP[0], "-c", EVENTS_CLIENT], stdout=subprocess.PIPE)
    assert listener.stdout is not None
    assert listener.stdout.readline() == b"subscribed\n"  # before the session is made
    start(session_user, "sh", "-c", "exec sleep 1000")
    out, _ = listener.communicate(timeout=120)
    events = [json.loads(line)["event"] for line in out.decode().splitlines()]
    assert events[0] == "session_created" and events[-1] == "pty_added", events


EVENTS_CLIENT = """
import json
from coop.ipc.client import connect, request
from coop.ipc.framing import recv_message
from coop.paths import coop_paths
sock = connect(coop_paths())
request(sock, {"cmd": "events"})
print("subscribed", flush=True)
sock.settimeout(120)
seen = []
while "pty_added" not in seen:
    event = recv_message(sock)
    seen.append(event["event"])
    print(json.dumps(event), flush=True)
"""


def test_connection_from_another_uid_is_refused(session_user: User) -> None:
    if os.getuid() != 0:
        return  # needs a second uid: covered when the suite runs as root
    start(session_user, "sh", "-c", "exec sleep 1000")
    run = session_user.coop_home / "run"
    for path in [run / "daemon.sock", run / "sessions" / "project.sock"]:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(path))
        sock.settimeout(60)
        try:
            sock.sendall(encode({"version": 1}))
            answer = sock.recv(100)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b"", path  # closed without a reply
        sock.close()
    assert session_user.coop("ls").returncode == 0  # the daemon still serves its user


def test_client_that_never_reads_does_not_slow_the_pty(session_user: User) -> None:
    start(session_user, "sh", "-c", "read go; yes 0123456789abcdefghijklmnopqrstuvwxyz | "
                                    "head -c 100000000; echo; echo FLOOD-DONE; exec sleep 1000")
    stuck = _raw_attach(session_user)  # never reads
    reader = attach(session_user)
    reader.write(b"go\r")
    # However slow this machine, the flood ends: the client that reads nothing never holds
    # the PTY back (a blocked PTY would never get there).
    reader.read_until(b"FLOOD-DONE", timeout=900)
    supervisor = ls(session_user)[0]["supervisor_pid"]
    rss_kb = int(Path(f"/proc/{supervisor}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb < 150_000, rss_kb  # bounded per-client queues, not 100 MB of backlog
    stuck.kill()
    stuck.wait()
    reader.write(b"\x1d")
    reader.wait()


def _raw_attach(user: User) -> subprocess.Popen[bytes]:
    """A protocol-level client that attaches and then never reads a byte."""
    code = ("import time\nfrom coop.ipc.client import connect, request\n"
            "from coop.paths import coop_paths\ns = connect(coop_paths())\n"
            "request(s, {'cmd': 'attach', 'session': 'project', 'pty': 0})\n"
            "print('attached', flush=True)\ntime.sleep(600)\n")
    proc = user.popen([COOP[0], "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"attached\n"
    return proc


RAW_CLIENT = """
import json, socket, sys
from coop.paths import coop_paths
from coop.ipc.framing import recv_message
sock = socket.socket(socket.AF_UNIX)
sock.connect(str(coop_paths().run_dir / "daemon.sock"))
sock.sendall(bytes.fromhex(sys.argv[1]))
sock.settimeout(120)
replies = []
while sys.argv[2] == "answered" and not replies or replies and replies[-1].get("ok"):
    try:
        replies.append(recv_message(sock))
    except ConnectionError:
        break
print(json.dumps(replies))
"""


def _send_raw(user: User, data: bytes, answered: bool) -> list[dict[str, object]]:
    """Replies until the first error (or the daemon hangs up); none when not `answered`."""
    result = user.run([COOP[0], "-c", RAW_CLIENT, data.hex(),
                       "answered" if answered else "not-answered"], timeout=180)
    assert result.returncode == 0, result.stderr
    replies: list[dict[str, object]] = json.loads(result.stdout)
    return replies


def test_malformed_frames_get_errors_and_the_daemon_keeps_serving(session_user: User) -> None:
    session_user.coop("ls")
    bad_inputs = [
        (b"\x00\x00\x00\x05hello", "INVALID_COMMAND"),               # not JSON
        (b"\x00\x00\x00\x02[]", "INVALID_COMMAND"),                  # not an object
        (b"\x7f\xff\xff\xff", "MESSAGE_TOO_LARGE"),                  # oversized
        (encode({"version": 99}), "VERSION_MISMATCH"),                # wrong version
        (encode({"version": 1}) + encode({"cmd": 5}), "INVALID_COMMAND"),   # cmd not a string
        (encode({"version": 1}) + encode({"cmd": "nope"}), "INVALID_COMMAND"),
        (encode({"version": 1}) + encode({"cmd": "attach", "session": "x"})
         + encode_data(b"early"), "INVALID_COMMAND SESSION_NOT_FOUND"),  # out of order
        (encode({"version": 1}) + encode_control({"type": "resize"}), "INVALID_COMMAND"),
        (b"\x00\x00", None),                                        # truncated, then hang up
    ]
    for data, expected in bad_inputs:
        replies = _send_raw(session_user, data, answered=expected is not None)
        if expected is None:
            assert replies == []
        else:
            assert replies[-1].get("ok") is False, (data, replies)
            assert replies[-1].get("error") in expected.split(), (data, replies)
        assert session_user.coop("daemon", "status").returncode == 0, data
    assert session_user.coop("ls").returncode == 0


def test_coop_in_a_project_creates_then_reattaches(session_user: User) -> None:
    first = spawn_on_pty(session_user, COOP + ["--", "sh"], size=(ROWS, COLS))
    first.read_until(b"$")
    first.write(b"echo marker-$((3*3)) > /tmp/m; cat /tmp/m\r")
    first.read_until(b"marker-9")
    first.write(b"\x1d")
    assert first.wait() == 0
    assert b"[detached from project" in first.output
    second = spawn_on_pty(session_user, COOP, size=(ROWS, COLS))  # same workspace: same session
    second.read_until(b"marker-9")  # the repainted screen of the same shell
    second.write(b"\x1d")
    assert second.wait() == 0
    assert len(ls(session_user)) == 1


def test_window_size_follows_the_most_recently_active_client(session_user: User) -> None:
    start(session_user, "sh")
    small = spawn_on_pty(session_user, COOP + ["attach"], size=(20, 60))
    big = spawn_on_pty(session_user, COOP + ["attach"], size=(40, 140))
    for client in (small, big):
        client.read_until(b"$")
    # Each client's own first resize precedes its keystrokes on its connection: once an
    # echo of `big` arrived, its start-up resize cannot land after `small` types.
    big.write(b"echo big-ready\r")
    big.read_until(b"big-ready\r\n")
    small.write(b"stty size\r")
    small.read_until(b"20 60")
    big.write(b"stty size\r")
    big.read_until(b"40 140")
    for client in (small, big):
        client.write(b"\x1d")
        client.wait()


def test_losing_the_supervisor_restores_the_terminal(session_user: User) -> None:
    _app(session_user)
    supervisor = int(ls(session_user)[0]["supervisor_pid"])  # type: ignore[call-overload]
    client = spawn_on_pty(session_user, ["/bin/sh", "-c",
                                         "stty -g; " + " ".join(COOP) + " attach; echo rc=$?; "
                                         "stty -g"], size=(ROWS, COLS))
    client.read_until(b"lines typed")
    os.kill(supervisor, signal.SIGKILL)
    assert client.wait() == 0
    text = bytes(client.output).decode(errors="replace")
    assert "was lost" in text and "rc=1" in text
    modes = [line.strip() for line in text.replace("\r", "").split("\n")
             if line.count(":") > 10]
    assert len(modes) == 2 and modes[0] == modes[1]  # stty -g before == after
    assert text.rfind("\x1b[?1049l") > text.rfind("\x1b[?1049h")  # alternate screen left


def test_detach_key_is_configurable_and_never_reaches_the_agent(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text("session: {detach_keys: ctrl-q}\n")
    session_user.chown(session_user.workspace)
    start(session_user, "sh", "-c", "stty raw -echo; echo raw-now; while :; do "
                                    "dd bs=1 count=1 2>/dev/null | od -An -tu1; done")
    client = spawn_on_pty(session_user, COOP, size=(ROWS, COLS))
    client.read_until(b"raw-now")  # attached, and the agent's terminal is raw
    client.write(b"ab\x1d")  # Ctrl+] is an ordinary key here
    client.write(b"\x11")  # Ctrl+Q detaches
    assert client.wait() == 0
    assert b"[detached from project" in client.output
    wait_for(lambda: "29" in logs(session_user), what="the keys to arrive")
    assert logs(session_user).split() == ["raw-now", "97", "98", "29"]  # never Ctrl+Q (17)


def test_secrets_stay_out_of_logs_and_listings(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text("env: {API_KEY: $MY_SECRET}\n")
    session_user.chown(session_user.workspace)
    secret = "sk-test-5ecret-value-91"
    result = session_user.coop("-d", "--", "sh", "-c", "echo ${#API_KEY}; exec sleep 1000",
                               env=session_user.env(MY_SECRET=secret))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: str(len(secret)) in logs(session_user), what="the agent to see the key")
    assert secret not in session_user.coop("ls", "--json").stdout.decode()
    found = subprocess.run(["grep", "-rl", secret, str(session_user.coop_home)],
                           capture_output=True)
    assert found.stdout == b""  # not in the daemon log, meta.json, upper dir, run dir


def test_status_shows_daemon_and_coopfile(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text("network: {mode: none}\n")
    session_user.chown(session_user.workspace)
    session_user.coop("ls")
    out = session_user.coop("status").stdout.decode()
    assert out.startswith("daemon: running (pid ")
    assert f"coopfile: {session_user.workspace}/Coopfile" in out
    assert "network: none" in out


def test_restart_command_restarts_a_running_agent(session_user: User) -> None:
    (session_user.workspace / "Coopfile").write_text("agent: {restart: never}\n")
    session_user.chown(session_user.workspace)
    start(session_user, "sh", "-c", "echo started-$$; exec sleep 1000")
    wait_for(lambda: logs(session_user).count("started-") == 1, what="first start")
    result = session_user.coop("restart")
    assert result.returncode == 0 and b"restarting the agent of project" in result.stdout
    wait_for(lambda: logs(session_user).count("started-") == 2, what="the restart")
    [session] = ls(session_user)
    assert session["state"] == "running"


def test_idle_timeout_from_the_global_config(session_user: User) -> None:
    del session_user.extra_env["COOP_DAEMON_IDLE_TIMEOUT"]
    (session_user.coop_home / "config.yaml").write_text("daemon: {idle_timeout_s: 1}\n")
    session_user.chown(session_user.coop_home)
    session_user.coop("ls")
    sock = session_user.coop_home / "run" / "daemon.sock"
    assert sock.exists()
    wait_for(lambda: not sock.exists(), what="idle exit per the global config")


def test_a_session_that_lost_its_processes_comes_back_with_its_files(
        session_user: User) -> None:
    agent = ("cat $HOME/kept 2>/dev/null || { echo from-before > $HOME/kept; echo first-run; }; "
             "exec sleep 1000")  # the file is written before the test sees first-run
    name = start(session_user, "sh", "-c", agent, name="phoenix")
    wait_for(lambda: b"first-run" in session_user.coop("logs", name).stdout, what="first run")
    crash_everything(session_user)
    [stopped] = ls(session_user)
    assert (stopped["name"], stopped["state"]) == ("phoenix", "stopped")
    assert "stopped" in session_user.coop("ls").stdout.decode().splitlines()[1]
    fresh = session_user.coop("-d", "-n", "other-name", "--", "sleep", "1000")
    assert fresh.returncode == 0  # other sessions start as usual meanwhile
    assert session_user.coop("kill", "other-name", "-f").returncode == 0

    revived = session_user.coop("-d")  # `coop` in the workspace brings it back
    assert revived.returncode == 0, revived.stderr
    assert b"starting session phoenix again" in revived.stderr
    wait_for(lambda: b"from-before" in session_user.coop("logs", name).stdout,
             what="the revived agent reading its old file")
    [running] = ls(session_user)
    assert (running["name"], running["state"]) == ("phoenix", "running")

    crash_everything(session_user)
    assert session_user.coop("start", "phoenix").stdout.startswith(b"phoenix runs again")
    crash_everything(session_user)
    discarded = session_user.coop("kill", "phoenix", "-f")
    assert discarded.returncode == 0 and b"killed phoenix" in discarded.stdout
    assert ls(session_user) == []
    assert not (session_user.coop_home / "data" / "sessions" / "phoenix").exists()
    missing = session_user.coop("start", "phoenix")
    assert missing.returncode == 3 and b"no session named phoenix" in missing.stderr
