"""What the sandbox needs from the machine, checked, with the exact fix for each failure.

Static checks read sysctls under a `/proc/sys`-shaped directory (tests pass fake trees);
the live check really creates a user namespace and mounts overlayfs in it, which is the
only proof that counts on kernels with out-of-tree restrictions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

MIN_KERNEL = (5, 11)  # overlayfs in a user namespace


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _read(proc_sys: Path, key: str) -> str | None:
    try:
        return (proc_sys / key).read_text().strip()
    except OSError:
        return None


def _sysctl_fix(key: str, value: str) -> str:
    dotted = key.replace("/", ".")
    return (f"sudo sysctl -w {dotted}={value} && "
            f"echo '{dotted} = {value}' | sudo tee /etc/sysctl.d/60-coop.conf")


def kernel_check(proc_sys: Path) -> Check:
    release = _read(proc_sys, "kernel/osrelease") or os.uname().release
    match = re.match(r"(\d+)\.(\d+)", release)
    version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    ok = version >= MIN_KERNEL
    return Check("kernel", ok, f"Linux {release}" + ("" if ok else
                 f" is older than {MIN_KERNEL[0]}.{MIN_KERNEL[1]}, which first allows "
                 "overlayfs in a user namespace"),
                 "" if ok else "Upgrade the kernel to 5.11 or newer (e.g. your distribution's "
                 "HWE/backports kernel), then reboot.")


def userns_checks(proc_sys: Path) -> list[Check]:
    checks = []
    max_userns = _read(proc_sys, "user/max_user_namespaces")
    ok = max_userns is None or int(max_userns or "0") > 0
    checks.append(Check("user namespaces", ok,
                        f"user.max_user_namespaces = {max_userns}" if max_userns else
                        "user.max_user_namespaces not present (assumed enabled)",
                        "" if ok else _sysctl_fix("user/max_user_namespaces", "15000")))
    clone = _read(proc_sys, "kernel/unprivileged_userns_clone")
    if clone is not None:
        ok = clone == "1"
        checks.append(Check("unprivileged user namespaces", ok,
                            f"kernel.unprivileged_userns_clone = {clone}",
                            "" if ok else _sysctl_fix("kernel/unprivileged_userns_clone", "1")))
    apparmor = _read(proc_sys, "kernel/apparmor_restrict_unprivileged_userns")
    if apparmor is not None:
        ok = apparmor == "0"
        checks.append(Check(
            "AppArmor user namespace restriction", ok,
            f"kernel.apparmor_restrict_unprivileged_userns = {apparmor}"
            + ("" if ok else " (Ubuntu 23.10+ blocks unprivileged user namespaces)"),
            "" if ok else _sysctl_fix("kernel/apparmor_restrict_unprivileged_userns", "0")))
    for key, what in (("user/max_mnt_namespaces", "mount"), ("user/max_pid_namespaces", "PID"),
                      ("user/max_net_namespaces", "network")):
        value = _read(proc_sys, key)
        if value is not None and int(value or "0") == 0:
            checks.append(Check(f"{what} namespaces", False, f"{key.replace('/', '.')} = 0",
                                _sysctl_fix(key, "15000")))
    return checks


def limits_checks(proc_sys: Path) -> list[Check]:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    ok = soft == resource.RLIM_INFINITY or soft >= 256
    checks = [Check("process limit", ok, f"ulimit -u = {'unlimited' if soft < 0 else soft}",
                    "" if ok else "Raise it: `ulimit -u 4096` (or nproc in "
                    "/etc/security/limits.conf).")]
    pid_max = _read(proc_sys, "kernel/pid_max")
    if pid_max is not None and int(pid_max) < 4096:
        checks.append(Check("pid_max", False, f"kernel.pid_max = {pid_max}",
                            _sysctl_fix("kernel/pid_max", "4194304")))
    return checks


def cgroup_check(sys_fs: Path = Path("/sys/fs/cgroup")) -> Check:
    unified = (sys_fs / "cgroup.controllers").exists()
    return Check("cgroup v2", unified,
                 "unified hierarchy" if unified else "legacy or hybrid cgroups (v1)",
                 "" if unified else "Optional for now: boot with "
                 "systemd.unified_cgroup_hierarchy=1 to get cgroup v2 (used for resource limits "
                 "in a later coop).", required=False)


def _probe(steps: Callable[[list[str]], None]) -> str | None:
    """Run `steps` in a forked child (namespaces must not touch this process); returns the
    failure, prefixed by the step name the child last put in its list, or None."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        step: list[str] = ["start"]
        try:
            steps(step)
            os._exit(0)
        except OSError as exc:
            os.write(write_fd, f"{step[-1]}: {exc.strerror or exc}".encode())
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        message = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else message


def live_check() -> Check:
    """Create a user+mount namespace and mount overlayfs in it, in a child process."""
    import tempfile

    from coop.sandbox import syscalls as sc

    with tempfile.TemporaryDirectory(prefix="coop-doctor-") as tmp:
        for sub in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(tmp, sub))

        def steps(step: list[str]) -> None:
            uid, gid = os.getuid(), os.getgid()
            step.append("unshare(user, mount)")
            sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
            step.append("uid_map")
            sc.map_ids(0, uid, 0, gid)
            step.append("overlayfs mount")
            sc.mount("overlay", f"{tmp}/merged", "overlay", 0,
                     f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work,userxattr")

        failure = _probe(steps)
    if failure is None:
        return Check("sandbox probe", True, "user namespace and overlayfs mount work")
    return Check("sandbox probe", False, f"failed at {failure}",
                 "Fix the failures above; if none is shown, this kernel or a security module "
                 "forbids unprivileged user namespaces (check `dmesg`).")


def network_check() -> Check:
    """The `proxy` and `none` modes: a network namespace of our own with loopback up."""
    from coop.sandbox import syscalls as sc
    from coop.sandbox.netns import loopback_up

    def steps(step: list[str]) -> None:
        uid, gid = os.getuid(), os.getgid()
        step.append("unshare(user, net)")
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNET)
        sc.map_ids(0, uid, 0, gid)
        step.append("loopback up")
        loopback_up()

    failure = _probe(steps)
    if failure is None:
        return Check("network namespace", True, "own namespace with loopback works "
                     "(network modes proxy and none)")
    return Check("network namespace", False, f"cannot isolate the network: {failure}",
                 "Enable network namespaces (user.max_net_namespaces > 0), or use "
                 "`network: {mode: host}` in the Coopfile, which does not isolate the network.")


def run_checks(proc_sys: Path = Path("/proc/sys"), live: bool = True) -> list[Check]:
    checks = [kernel_check(proc_sys), *userns_checks(proc_sys), *limits_checks(proc_sys),
              cgroup_check()]
    if live:
        checks += [live_check(), network_check()]
    return checks


def failures_text(checks: list[Check]) -> str:
    """The fixes of the failed required checks, one per line (empty when all pass)."""
    return "\n".join(f"✗ {c.name}: {c.detail}\n  fix: {c.fix}"
                     for c in checks if not c.ok and c.required)
