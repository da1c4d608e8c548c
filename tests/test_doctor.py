"""`coop doctor` against fake /proc/sys trees, and a sandbox that really cannot be built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from coop.sandbox.doctor import failures_text, run_checks
from tests.helpers import COOP, User, need


def fake_proc_sys(root: Path, **values: str) -> Path:
    defaults = {"kernel/osrelease": "6.8.0-generic", "user/max_user_namespaces": "63000",
                "kernel/pid_max": "4194304"}
    for key, value in {**defaults, **values}.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return root


def failed(root: Path) -> dict[str, str]:
    return {c.name: c.fix for c in run_checks(root, live=False) if not c.ok and c.required}


def test_healthy_machine(tmp_path: Path) -> None:
    assert failed(fake_proc_sys(tmp_path)) == {}


def test_ubuntu_apparmor_restriction(tmp_path: Path) -> None:
    fixes = failed(fake_proc_sys(tmp_path, **{"kernel/apparmor_restrict_unprivileged_userns": "1"}))
    assert fixes == {"AppArmor user namespace restriction":
                     "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 && "
                     "echo 'kernel.apparmor_restrict_unprivileged_userns = 0' | "
                     "sudo tee /etc/sysctl.d/60-coop.conf"}


def test_user_namespaces_disabled(tmp_path: Path) -> None:
    fixes = failed(fake_proc_sys(tmp_path, **{"user/max_user_namespaces": "0",
                                              "kernel/unprivileged_userns_clone": "0"}))
    assert set(fixes) == {"user namespaces", "unprivileged user namespaces"}
    assert "user.max_user_namespaces=15000" in fixes["user namespaces"]
    assert "kernel.unprivileged_userns_clone=1" in fixes["unprivileged user namespaces"]


def test_old_kernel_without_overlayfs_in_user_namespaces(tmp_path: Path) -> None:
    checks = run_checks(fake_proc_sys(tmp_path, **{"kernel/osrelease": "5.4.0-150-generic"}),
                        live=False)
    text = failures_text(checks)
    assert "Linux 5.4.0-150-generic is older than 5.11" in text
    assert "Upgrade the kernel to 5.11 or newer" in text


def test_doctor_command_passes_here(user: User) -> None:
    result = user.coop("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ sandbox probe" in result.stdout.decode()
    assert "✓ web page: built into the package" in result.stdout.decode()


def test_a_missing_web_page_is_reported_with_the_build_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coop.web import server

    monkeypatch.setattr(server, "STATIC", tmp_path)
    check = server.page_check()
    assert not check.ok and not check.required  # sandboxes still run
    assert "npm ci && npm run build" in check.fix


def test_unbuildable_sandbox_fails_with_the_fix_and_never_runs_unsandboxed(user: User) -> None:
    """A real machine state: user namespaces limited to 0 (in a namespace the test makes)."""
    need("unshare", install="apt-get install util-linux")
    marker = user.workspace / "ran-unsandboxed"
    script = ("echo 0 > /proc/sys/user/max_user_namespaces && exec "
              + " ".join(COOP) + f" run -- touch {marker}")
    result = user.run(["unshare", "-Ur", "sh", "-c", script])
    message = result.stderr.decode()
    assert result.returncode == 1, message
    assert message.startswith("coop: cannot build the sandbox: cannot create namespaces")
    assert "✗ user namespaces: user.max_user_namespaces = 0" in message
    assert "fix: sudo sysctl -w user.max_user_namespaces=15000" in message
    assert "Traceback" not in message
    assert not marker.exists()
    doctor = subprocess.run(["unshare", "-Ur", "sh", "-c",
                             "echo 0 > /proc/sys/user/max_user_namespaces && exec "
                             + " ".join(COOP) + " doctor"], capture_output=True, env=user.env())
    assert doctor.returncode == 1
    assert "✗ sandbox probe: failed at unshare(user, mount)" in doctor.stdout.decode()


def test_doctor_piped_keeps_each_check_on_one_line(user: User) -> None:
    """Piped into a file or a bug report (COLUMNS as narrow as a phone's), no check is
    broken mid-phrase."""
    import json

    checks = json.loads(user.coop("doctor", "--json").stdout)["checks"]
    printed = user.coop("doctor", env=user.env(COLUMNS="40")).stdout.decode().splitlines()
    for check in checks:
        assert any(line.endswith(f" {check['name']}: {check['detail']}") for line in printed), \
            (check, printed)
        if not check["ok"] and check["fix"]:
            assert f"    fix: {check['fix']}" in printed
