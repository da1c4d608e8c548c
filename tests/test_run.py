"""`coop run` behaves like `docker run --rm -i[t]`: exit codes, stdio, PTY, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.helpers import COOP, User, need, spawn_on_pty, static_busybox


def test_exit_code_and_stdio_pass_through(any_user: User) -> None:
    result = any_user.coop("run", "--", "sh", "-c", "tr a-z A-Z; echo err >&2; exit 7",
                           input=b"hello\n")
    assert result.returncode == 7
    assert result.stdout == b"HELLO\n"
    assert result.stderr == b"err\n"


def test_missing_command_exits_127_with_a_clear_message(any_user: User) -> None:
    result = any_user.coop("run", "--", "no-such-agent", "--flag")
    assert result.returncode == 127
    assert b"no-such-agent: command not found in the sandbox" in result.stderr


def test_environment_is_minimal(any_user: User) -> None:
    env = any_user.env(SECRET_TOKEN="hunter2", SSH_AUTH_SOCK="/run/user/1/agent")
    result = any_user.coop("run", "--", "env", env=env)
    assert result.returncode == 0, result.stderr
    names = {line.split("=", 1)[0] for line in result.stdout.decode().splitlines()}
    proxy = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    assert names <= {"PATH", "TERM", "LANG", "HOME", "USER", "COOP_SESSION",
                     "COOP_WORKSPACE", "PWD", "SHLVL", "_"} | proxy | {p.lower() for p in proxy}
    assert b"hunter2" not in result.stdout
    assert f"HOME={any_user.home}".encode() in result.stdout
    assert b"COOP_WORKSPACE=/workspace" in result.stdout


def test_coopfile_env_expands_from_the_host_and_is_not_left_on_disk(any_user: User) -> None:
    (any_user.workspace / "Coopfile").write_text(
        "env:\n  API_KEY: key-${MY_KEY}\n  PLAIN: $$literal\n  GONE: $NOT_SET_ANYWHERE\n")
    any_user.chown(any_user.workspace)
    result = any_user.coop("run", "--", "sh", "-c", "echo $API_KEY $PLAIN [$GONE]",
                           env=any_user.env(MY_KEY="s3cr3t-value"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"key-s3cr3t-value $literal []\n"
    assert b"$NOT_SET_ANYWHERE is not set" in result.stderr
    leftovers = subprocess.run(["grep", "-rl", "s3cr3t-value", str(any_user.coop_home)],
                               capture_output=True)
    assert leftovers.stdout == b""


def test_hostname_cwd_and_identity(any_user: User) -> None:
    result = any_user.coop("run", "--", "sh", "-c", "hostname; pwd; id -u; echo $HOME")
    lines = result.stdout.decode().split()
    assert lines == ["project", "/workspace", str(any_user.uid), str(any_user.home)]


def test_pty_gets_its_own_terminal_size_and_ctrl_c(user: User) -> None:
    run = spawn_on_pty(user, COOP + ["run", "--", "sh", "-c",
                                     "tty; stty size; trap 'echo got-INT; exit 42' INT; "
                                     "echo READY; while :; do sleep 0.1; done"],
                       size=(33, 111))
    run.read_until(b"READY")
    assert b"/dev/pts/0" in run.output  # a PTY of the sandbox's own devpts
    assert b"33 111" in run.output
    run.write(b"\x03")
    assert run.wait() == 42
    assert b"got-INT" in run.output


def test_resize_reaches_the_sandbox(user: User) -> None:
    import fcntl
    import struct
    import termios

    run = spawn_on_pty(user, COOP + ["run", "--", "sh", "-c",
                                     "trap 'stty size' WINCH; echo READY; "
                                     "while :; do sleep 0.1; done"], size=(20, 70))
    run.read_until(b"READY")
    fcntl.ioctl(run.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 132, 0, 0))
    os.kill(run.pid, signal.SIGWINCH)
    run.read_until(b"44 132")
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM


def test_terminal_is_restored_after_the_run(user: User) -> None:
    run = spawn_on_pty(user, ["/bin/sh", "-c",
                              "stty -g; " + " ".join(COOP) + " run -- true; stty -g"])
    assert run.wait() == 0
    before, after = run.output.decode().split()[:2]
    assert before == after


def test_sigterm_reaches_the_command(user: User) -> None:
    proc = user.popen(COOP + ["run", "--", "sh", "-c",
                              "trap 'echo got-TERM; exit 3' TERM; echo READY; "
                              "while :; do sleep 0.1; done"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"READY\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert out == b"got-TERM\n"
    assert proc.returncode == 3


def test_orphaned_zombies_are_reaped(user: User) -> None:
    need("ps", install="apt-get install procps")
    # Orphans that exit are reaped by the sandbox's init: wait until they and any zombie
    # are gone (a zombie that stays a minute is not going to be reaped). Only the orphans
    # run `sleep 0.1`: this script (in its shell's and init's command lines) never spells
    # it out, so grep finds nothing else.
    script = ("for i in 1 2 3 4 5; do (sh -c 'sleep 0.$((0+1))' &); done; i=0; "
              "while [ $i -lt 300 ]; do "
              "ps -eo stat=,args= | grep -q -e '^Z' -e 'sleep 0[.]1$' || "
              "{ echo no-zombies; exit 0; }; sleep 0.2; i=$((i+1)); done; ps -eo stat=,args=")
    result = user.coop("run", "--", "sh", "-c", script, timeout=180)
    assert result.stdout == b"no-zombies\n", result.stdout


def test_killing_coop_run_kills_the_sandbox(user: User) -> None:
    pgrep = need("pgrep", install="apt-get install procps")
    marker = f"coop-orphan-check-{os.getpid()}"
    proc = user.popen(COOP + ["run", "--", "python3", "-c",
                              "import time; print('READY', flush=True); time.sleep(300)",
                              marker], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"READY\n"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the marker is this run's own, the uid this test's
        if subprocess.run([pgrep, "-u", str(user.uid), "-f", marker],
                          capture_output=True).returncode != 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the sandboxed command outlived coop run")


def test_mounts_and_named_volumes(user: User) -> None:
    data = user.home / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    (user.home / ".gitconfig").write_text("[user]\n  name = T\n")
    (user.workspace / "Coopfile").write_text(
        "mounts:\n"
        "  - ~/data:/data\n"
        "  - ~/.gitconfig:~/.gitconfig:ro\n"
        "  - cache:/cache\n")
    user.chown(user.home)
    user.chown(user.workspace)
    script = ("cat /data/in.txt; echo out > /data/out.txt; cat ~/.gitconfig; "
              "echo x >> ~/.gitconfig 2>/dev/null || echo ro-ok; "
              "cat /cache/v 2>/dev/null || echo first; echo kept > /cache/v")
    first = user.coop("run", "--", "sh", "-c", script)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().split("\n")[:5] == ["from host", "[user]", "  name = T",
                                                     "ro-ok", "first"]
    assert (data / "out.txt").read_text() == "out\n"
    second = user.coop("run", "--", "cat", "/cache/v")
    assert second.stdout == b"kept\n"
    assert (user.coop_home / "data" / "volumes" / "cache" / "v").read_text() == "kept\n"


def test_upper_dir_is_discarded_after_the_run(user: User) -> None:
    result = user.coop("run", "--", "sh", "-c", "echo x > /tmp/t; echo y > ~/h; echo done")
    assert result.stdout == b"done\n"
    assert not any((user.coop_home / "data" / "sessions").iterdir())
    again = user.coop("run", "--", "sh", "-c", "ls ~ /tmp")
    assert b"h" not in again.stdout.split() and b"t" not in again.stdout.split()


def _busybox_rootfs(root: Path) -> None:
    busybox = static_busybox()
    (root / "bin").mkdir(parents=True)
    try:  # a hard link is quicker, where the filesystem and fs.protected_hardlinks allow
        os.link(busybox, root / "bin" / "busybox")
    except OSError:
        subprocess.run(["cp", str(busybox), str(root / "bin" / "busybox")], check=True)
    for applet in ("sh", "ls", "cat", "echo", "id", "touch", "hostname"):
        (root / "bin" / applet).symlink_to("busybox")
    for sub in ("etc", "tmp", "usr/bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "os-release").write_text("ID=coop-test-busybox\n")


def test_dir_base(user: User, world_tmp: Path) -> None:
    rootfs = world_tmp / "rootfs"
    _busybox_rootfs(rootfs)
    user.chown(rootfs)
    (user.workspace / "Coopfile").write_text(f"image: dir:{rootfs}\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "sh", "-c",
                       "cat /etc/os-release; ls /; id -un; echo new > /bin/added; "
                       "cat /bin/added; ls /usr/bin | wc -l")
    assert result.returncode == 0, result.stderr
    assert b"ID=coop-test-busybox" in result.stdout
    assert b"new\n" in result.stdout
    assert not (rootfs / "bin" / "added").exists()  # the base is never written


def test_tar_base_and_hostile_entries(user: User, world_tmp: Path) -> None:
    rootfs = world_tmp / "rootfs"
    _busybox_rootfs(rootfs)
    archive = world_tmp / "base.tar"
    outside = world_tmp / "escaped"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
        for name, kind, target in (("../escaped", tarfile.REGTYPE, ""),
                                   ("evil-link", tarfile.SYMTYPE, str(world_tmp)),
                                   ("evil-link/escaped", tarfile.REGTYPE, "")):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar.addfile(info, None if kind == tarfile.SYMTYPE else __import__("io").BytesIO())
    os.chmod(archive, 0o644)
    (user.workspace / "Coopfile").write_text(f"image: tar:{archive}\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "cat", "/etc/os-release")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ID=coop-test-busybox\n"
    assert not outside.exists()


def test_limits_apply_inside(user: User) -> None:
    (user.workspace / "Coopfile").write_text("limits: {nofile: 256, pids: 500}\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "python3", "-c",
                       "import resource as r; print(r.getrlimit(r.RLIMIT_NOFILE)[0], "
                       "r.getrlimit(r.RLIMIT_NPROC)[0])")
    assert result.stdout.split() == [b"256", b"500"], result.stderr


def test_unreadable_workspace_is_a_clear_error(user: User, world_tmp: Path) -> None:
    private = world_tmp / "private"
    # Root's 0700 dir for the throwaway uid; for a suite run by a user, their own dir with
    # no permissions at all.
    private.mkdir(mode=0o700 if os.getuid() == 0 else 0o000)
    try:
        result = user.coop("run", "-w", str(private), "--", "true")
    finally:
        private.chmod(0o700)
    if user.is_root:
        return
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"coop: cannot use {private} as the workspace")


def test_new_named_volume_is_seeded_from_the_matching_host_path(user: User) -> None:
    config = user.home / ".agent"
    config.mkdir()
    (config / "login.json").write_text('{"token": "from host"}\n')
    (user.workspace / "Coopfile").write_text("mounts: ['agent-config:~/.agent']\n")
    user.chown(user.home)
    user.chown(user.workspace)
    first = user.coop("run", "--", "sh", "-c", "cat ~/.agent/login.json; echo more > ~/.agent/x")
    assert first.stdout == b'{"token": "from host"}\n', first.stderr
    (config / "login.json").write_text("changed on the host later\n")
    second = user.coop("run", "--", "sh", "-c", "cat ~/.agent/login.json ~/.agent/x")
    assert second.stdout == b'{"token": "from host"}\nmore\n'  # seeded once, then its own
    assert not (config / "x").exists()
