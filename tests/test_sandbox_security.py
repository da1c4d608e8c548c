"""SPEC §13: every isolation promise, attacked from inside a real sandbox.

Each test starts `coop run` as a real process, as an unprivileged user (and as root too
when the suite runs as root), and tries to break out from inside.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import User


def sh(user: User, script: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return user.coop("run", *extra, "--", "sh", "-c", script)


def py(user: User, code: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return user.coop("run", *extra, "--", "python3", "-c", textwrap.dedent(code))


def test_planted_secret_in_host_home_is_unreadable(any_user: User) -> None:
    secret = any_user.home / ".ssh" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY 1234\n")
    any_user.chown(any_user.home)
    result = sh(any_user, f"cat {secret}; ls -a {any_user.home}; "
                          "grep -rs 'PRIVATE KEY 1234' /home /root /tmp /run /var /etc; true")
    assert result.returncode == 0, result.stderr
    assert b"PRIVATE KEY 1234" not in result.stdout
    assert b"No such file or directory" in result.stderr
    assert b".ssh" not in result.stdout  # the sandbox home is a fresh, empty directory


def test_writes_land_only_in_workspace_and_base_is_unchanged(any_user: User) -> None:
    name = f"coop-escape-{os.getpid()}"
    targets = [f"/usr/{name}", f"/usr/bin/{name}", f"/etc/{name}", f"/var/{name}",
               f"/opt/{name}", f"/{name}", f"/sys/{name}", f"/proc/{name}"]
    before = {t: os.path.exists(t) for t in targets}
    script = "; ".join(f"echo x > {t} 2>/dev/null" for t in targets)
    result = sh(any_user, f"{script}; echo made > /workspace/made.txt")
    assert result.returncode == 0, result.stderr
    assert (any_user.workspace / "made.txt").read_text() == "made\n"
    for target in targets:
        assert os.path.exists(target) == before[target] is False, target


def test_files_created_in_workspace_belong_to_the_user(any_user: User) -> None:
    result = sh(any_user, "mkdir -p /workspace/d && echo hi > /workspace/d/f && id -u && id -un")
    assert result.returncode == 0, result.stderr
    uid_inside, name_inside = result.stdout.decode().split()
    assert int(uid_inside) == any_user.uid
    assert name_inside  # the user has a name inside even without a passwd entry on the host
    for path in (any_user.workspace / "d", any_user.workspace / "d" / "f"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (any_user.uid, any_user.gid)


@pytest.fixture
def host_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_host_processes_are_invisible_and_unsignallable(
        any_user: User, host_process: subprocess.Popen[bytes]) -> None:
    pid = host_process.pid
    result = py(any_user, f"""
        import os, signal
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print("pids", pids)
        try:
            os.kill({pid}, signal.SIGKILL)
            print("killed")
        except ProcessLookupError:
            print("no such process")
    """)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "no such process" in out
    pids = [int(p) for p in out.split("pids [")[1].split("]")[0].split(",")]
    assert pids[0] == 1 and len(pids) <= 3  # init, python, maybe a shell
    assert host_process.poll() is None


def test_mount_umount_and_hostname_fail(any_user: User) -> None:
    script = ("mount -t tmpfs none /tmp 2>&1; echo mount=$?; "
              "umount /workspace 2>&1; echo umount=$?; "
              "umount -l /proc 2>&1; echo umount_proc=$?; "
              "hostname evil 2>&1; echo hostname=$?; "
              # a nested user namespace gets full caps there, but the mounts are locked
              "unshare -Urm sh -c 'umount /workspace || umount -l /home || exit 9' 2>&1;"
              " echo nested=$?; ls /workspace >/dev/null && echo still_there")
    result = sh(any_user, script)
    out = result.stdout.decode()
    for step in ("mount", "umount", "umount_proc", "hostname", "nested"):
        assert f"\n{step}=0" not in "\n" + out, out
    assert "still_there" in out


def test_ptrace_of_init_is_refused(any_user: User) -> None:
    result = py(any_user, """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        print("attach", libc.ptrace(16, 1, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
    """)
    assert result.returncode == 0, result.stderr
    assert b"attach -1 1" in result.stdout  # EPERM


def test_docker_like_and_coop_sockets_are_absent(any_user: User, tmp_path: Path) -> None:
    # coop's own dirs, put where the host base does expose them (/var)
    coop_home = Path(f"/var/tmp/coop-test-home-{os.getpid()}")
    coop_home.mkdir(parents=True, exist_ok=True)
    planted: list[Path] = [coop_home / "run" / "coop.sock"]
    if os.getuid() == 0:
        planted += [Path("/run/docker.sock"), Path("/run/podman/podman.sock")]
    servers = []
    try:
        for path in planted:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                continue  # a real one, or another test run's: it is planted all the same
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(path))
            server.listen()
            servers.append((server, path, path.stat().st_ino))
        any_user.chown(coop_home)
        any_user.coop_home = coop_home
        script = "; ".join(f"test -e {p} && echo VISIBLE {p}" for p in planted)
        result = sh(any_user, script + f"; ls -A {coop_home}; true")
        assert result.returncode == 0, result.stderr
        assert b"VISIBLE" not in result.stdout
        assert result.stdout.strip() == b""  # coop's home is an empty mask inside
    finally:
        for server, path, inode in servers:
            server.close()
            # /run/docker.sock is the same path for every run: remove only our own.
            if path.exists() and path.stat().st_ino == inode:
                path.unlink()
        subprocess.run(["rm", "-rf", str(coop_home)], check=False)


@pytest.fixture
def host_tcp_service() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_network_none_has_no_route_to_host_loopback(any_user: User,
                                                    host_tcp_service: int) -> None:
    code = f"""
        import socket
        for host in ("127.0.0.1", "10.0.2.2", "8.8.8.8"):
            try:
                socket.create_connection((host, {host_tcp_service}), timeout=2)
                print("connected", host)
            except OSError as exc:
                print("refused", host, exc.errno)
    """
    result = py(any_user, code, "--network", "none")
    assert result.returncode == 0, result.stderr
    assert b"connected" not in result.stdout
    assert result.stdout.count(b"refused") == 3
    # the same service is reachable with the host network, so the test can fail
    result = py(any_user, code, "--network", "host")
    assert b"connected 127.0.0.1" in result.stdout


def test_no_host_terminal_fd_enters_the_sandbox(user: User) -> None:
    """CVE-2017-5226: TIOCSTI through an inherited host terminal fd must be impossible."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = user.popen(COOP_RUN_TIOCSTI, stdin=subprocess.PIPE, stdout=slave,
                          stderr=slave)
        proc.communicate(timeout=120)
    finally:
        os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.returncode == 0, output
    assert b"isatty False False False" in output
    assert b"TIOCSTI refused" in output


COOP_RUN_TIOCSTI = [sys.executable, "-m", "coop", "run", "--", "python3", "-c", textwrap.dedent("""
    import fcntl, os, termios
    print("isatty", *(os.isatty(fd) for fd in (0, 1, 2)))
    try:
        fcntl.ioctl(1, termios.TIOCSTI, b"x")
        print("TIOCSTI worked")
    except OSError:
        print("TIOCSTI refused")
""")]
