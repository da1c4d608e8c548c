"""Starting a sandbox: namespaces, mounts, the inner user namespace, PID 1 and exec.

Process tree (host pids):

    caller (coop run, later the session supervisor)
      └─ outer   unshare(user, mnt, pid, uts, ipc[, net]); maps uid 0 -> the user; waits
          └─ init   PID 1 inside: mounts, pivot_root, inner user namespace (the user's own
                    uid), creates the PTY, forks the command, reaps, forwards signals
              └─ command   setsid, controlling tty, rlimits, no_new_privs, no caps, exec

Mounts are made as root of the outer user namespace; init and the command then live in an
inner user namespace with no capabilities over the mount namespace, so no mount can be
made, moved or undone from inside. The caller gets `{"pid"}` from outer and `{"ready"}`
(with the PTY master over SCM_RIGHTS) or `{"error"}` from init on one seqpacket socket.
The PTY is created inside the sandbox's own devpts, so the host terminal's fd never
enters the sandbox (TIOCSTI, CVE-2017-5226) and `tty` inside names a real device.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import socket
import struct
import termios
from dataclasses import dataclass

from coop.errors import SandboxError
from coop.sandbox import syscalls as sc
from coop.sandbox.plan import SandboxPlan

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)
_RLIMITS = {"pids": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE,
            "memory_mb": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU}
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


@dataclass
class Sandbox:
    """A running sandbox as its caller sees it."""

    pid: int
    """Host pid of the outer process: its exit status is the command's."""
    init_pid: int
    """Host pid of the sandbox's PID 1."""
    command_pid: int
    """The command's pid inside the sandbox's PID namespace."""
    master_fd: int | None
    """The PTY master, when the plan asked for a terminal."""


def exit_code(status: int) -> int:
    """A wait status as a shell would report it (128+N for signal N)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _send(sock: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _write_id_maps(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{inside_uid} {outside_uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{inside_gid} {outside_gid} 1")


def launch(plan: SandboxPlan, stdio: tuple[int, int, int] = (0, 1, 2)) -> Sandbox:
    """Start the sandbox described by `plan`; returns once the command has been forked.

    Raises `SandboxError` (never runs the command unsandboxed) when any step fails.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    caller = os.getpid()
    pid = os.fork()
    if pid == 0:  # outer
        parent_sock.close()
        _outer(plan, child_sock, stdio, caller)
    child_sock.close()
    try:
        return _await_ready(plan, parent_sock, pid)
    finally:
        parent_sock.close()


def _await_ready(plan: SandboxPlan, sock: socket.socket, pid: int) -> Sandbox:
    init_pid = -1
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
        if not data:
            _, status = os.waitpid(pid, 0)
            raise SandboxError(f"the sandbox exited during set-up (status {exit_code(status)}).")
        message = json.loads(data)
        if "error" in message:
            os.waitpid(pid, 0)
            raise SandboxError(f"cannot build the sandbox: {message['error']}.",
                               _doctor_hint())
        if "pid" in message:
            init_pid = message["pid"]
        if message.get("ready"):
            return Sandbox(pid, init_pid, message["command_pid"], fds[0] if fds else None)


def _doctor_hint() -> str:
    """The doctor's findings, so a failed sandbox says how to fix the machine."""
    from coop.sandbox.doctor import failures_text, run_checks

    found = failures_text(run_checks(live=False))
    return found or "Run `coop doctor` to check what this machine is missing."


def _outer(plan: SandboxPlan, sock: socket.socket, stdio: tuple[int, int, int],
           caller: int) -> None:
    """The first child: create the namespaces, then fork init and wait for it."""
    code = 1
    try:
        os.setpgid(0, 0)  # terminal signals reach the caller only, which forwards them
        if plan.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != caller:
                os._exit(1)
        for target, fd in enumerate(stdio):
            if fd != target:
                os.dup2(fd, target, inheritable=True)
        flags = (sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWUTS
                 | sc.CLONE_NEWIPC)
        if plan.network != "host":
            flags |= sc.CLONE_NEWNET
        try:
            sc.unshare(flags)
        except OSError as exc:
            raise OSError(exc.errno,
                          f"cannot create namespaces: {os.strerror(exc.errno or 0)}") from None
        _write_id_maps(0, plan.identity.uid, 0, plan.identity.gid)
        if plan.network != "host":
            from coop.sandbox.netns import loopback_up

            loopback_up()
        init = os.fork()
        if init == 0:
            _init(plan, sock)
        _send(sock, {"pid": init})
        sock.close()
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, lambda s, _f: _kill(init, s))
        _, status = os.waitpid(init, 0)
        code = exit_code(status)
    except BaseException as exc:
        _report(sock, exc)
    finally:
        os._exit(code)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _report(sock: socket.socket, exc: BaseException) -> None:
    try:
        errno = exc.errno if isinstance(exc, OSError) else 0
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
            text = f"{text} ({exc.filename})"
        _send(sock, {"error": text, "errno": errno})
    except OSError:
        pass


def _init(plan: SandboxPlan, sock: socket.socket) -> None:
    """PID 1 of the sandbox."""
    try:
        if plan.die_with_parent:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        for op in plan.ops:
            try:
                op.apply(plan.stage)
            except OSError as exc:
                reason = os.strerror(exc.errno or 0)
                raise OSError(exc.errno, f"{op.describe()}: {reason}") from None
        sc.sethostname(plan.name)
        os.chdir(plan.stage)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
        # From here on: the user's own uid, no capabilities over any mount.
        sc.unshare(sc.CLONE_NEWUSER)
        _write_id_maps(plan.identity.uid, 0, plan.identity.gid, 0)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        master, slave = _open_pty(plan.tty_size) if plan.tty_size else (None, None)
        child = os.fork()
        if child == 0:
            sock.close()
            _exec_command(plan, slave)
        if slave is not None:
            os.close(slave)
        _send(sock, {"ready": True, "command_pid": child}, [master] if master is not None else None)
        if master is not None:
            os.close(master)
        sock.close()
    except BaseException as exc:
        _report(sock, exc)
        os._exit(1)
    _reap(child)


def _open_pty(size: tuple[int, int]) -> tuple[int, int]:
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    rows, cols = size
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def _exec_command(plan: SandboxPlan, slave: int | None) -> None:
    """The command's process: session, terminal, limits, privileges, then exec."""
    try:
        os.setsid()
        if slave is not None:
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):
                os.dup2(slave, target)
        os.closerange(3, 1 << 16)
        for key, value in plan.limits.items():
            which = _RLIMITS[key]
            wanted = value * 1024 * 1024 if key == "memory_mb" else value
            _, hard = resource.getrlimit(which)
            limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(which, (limit, limit))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED_SIGNALS):
            signal.signal(sig, signal.SIG_DFL)
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        sc.drop_all_capabilities()
        os.chdir(plan.cwd)
    except BaseException as exc:
        os.write(2, f"coop: cannot start the command: {exc}\n".encode())
        os._exit(126)
    name = plan.argv[0]
    try:
        os.execvpe(name, plan.argv, plan.env)
    except FileNotFoundError:
        os.write(2, f"coop: {name}: command not found in the sandbox "
                    f"(PATH={plan.env.get('PATH', '')})\n".encode())
        os._exit(127)
    except OSError as exc:
        os.write(2, f"coop: {name}: {exc.strerror}\n".encode())
        os._exit(126)


def _reap(child: int) -> None:
    """Init's loop: reap every process, forward signals, exit with the command."""
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda s, _f: _kill(child, s))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(exit_code(status))
