"""Builds: `setup` steps as cached overlay layers over a base (here a busybox dir: base)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import COOP, User, busybox_rootfs


@pytest.fixture
def busybox_root(world_tmp: Path, user: User) -> Path:
    return busybox_rootfs(world_tmp / "rootfs", user)


def coopfile(user: User, root: Path, steps: list[str]) -> None:
    lines = [f"image: dir:{root}", "setup:"] + [f"  - {step!r}" for step in steps]
    (user.workspace / "Coopfile").write_text("\n".join(lines) + "\n")
    user.chown(user.workspace)


def ran(output: bytes) -> list[str]:
    """Which steps the build ran and which it took from the cache, in order."""
    return [" ".join(line.split()[:3]).rstrip(":") for line in output.decode().splitlines()
            if line.startswith("step ")]


def test_steps_are_cached_and_only_a_changed_last_step_reruns(user: User,
                                                              busybox_root: Path) -> None:
    coopfile(user, busybox_root, ["echo one > /etc/one", "echo two > /etc/two"])
    first = user.coop("build")
    assert first.returncode == 0, first.stderr
    assert ran(first.stderr) == ["step 1/2 run", "step 2/2 run"]
    again = user.coop("build")
    assert ran(again.stderr) == ["step 1/2 cached", "step 2/2 cached"]
    coopfile(user, busybox_root, ["echo one > /etc/one", "echo TWO > /etc/two"])
    changed = user.coop("build")
    assert ran(changed.stderr) == ["step 1/2 cached", "step 2/2 run"]
    result = user.coop("run", "--", "cat", "/etc/one", "/etc/two")
    assert result.stdout == b"one\nTWO\n", result.stderr
    df = user.coop("system", "df").stdout.decode()
    assert "echo TWO > /etc/two" in df and "echo one > /etc/one" in df
    assert not (busybox_root / "etc" / "one").exists()  # the base itself is never written


def test_failed_step_exits_5_names_it_and_keeps_the_good_layers(user: User,
                                                                busybox_root: Path) -> None:
    coopfile(user, busybox_root, ["echo fine > /etc/fine",
                                  "echo about to fail; echo oops >&2; false"])
    failed = user.coop("build")
    assert failed.returncode == 5
    message = failed.stderr.decode()
    assert "step 2 (setup: echo about to fail; echo oops >&2; false) failed with exit code 1" \
        in message
    assert "  about to fail\n  oops" in message  # its last output, kept
    coopfile(user, busybox_root, ["echo fine > /etc/fine", "echo fixed > /etc/fixed"])
    fixed = user.coop("build")
    assert ran(fixed.stderr) == ["step 1/2 cached", "step 2/2 run"]


def test_killed_build_leaves_no_layer_a_later_run_uses(user: User, busybox_root: Path) -> None:
    coopfile(user, busybox_root, ["echo started; sleep 30; echo done > /etc/slow"])
    proc = user.popen(COOP + ["build"], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    seen = b""
    while b"started" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read1(4096)  # type: ignore[attr-defined]
    assert b"started" in seen, seen  # killed mid-step, not before it began
    proc.kill()
    proc.wait()
    layers = user.coop_home / "data" / "layers"
    assert not list(layers.glob("*/complete"))
    coopfile(user, busybox_root, ["echo started; echo done > /etc/slow"])
    rebuilt = user.coop("run", "--", "cat", "/etc/slow")
    assert rebuilt.stdout == b"done\n", rebuilt.stderr


def test_setup_on_the_host_image_is_a_clear_error(user: User) -> None:
    (user.workspace / "Coopfile").write_text("setup: [echo hi]\n")
    user.chown(user.workspace)
    result = user.coop("build")
    assert result.returncode == 1  # a Coopfile error, found when it is read
    assert result.stderr.decode().startswith(
        f"coop: {user.workspace}/Coopfile:1:1: `setup` needs an image to run in")


def test_a_session_starts_from_the_built_base(session_user: User, world_tmp: Path) -> None:
    root = busybox_rootfs(world_tmp / "rootfs", session_user)
    coopfile(session_user, root, ["mkdir -p /etc && echo built > /etc/built"])
    result = session_user.coop("-d", "--", "sh", "-c", "cat /etc/built; exec sleep 1000")
    assert result.returncode == 0, result.stderr
    assert b"step 1/1 run" in result.stderr
    deadline = time.monotonic() + 120
    while b"built" not in session_user.coop("logs").stdout:
        assert time.monotonic() < deadline, "the session did not see its built layer"
        time.sleep(0.1)


def test_system_prune_keeps_what_sessions_use_and_what_was_used_lately(
        session_user: User, world_tmp: Path) -> None:
    root = busybox_rootfs(world_tmp / "rootfs", session_user)
    layers = session_user.coop_home / "data" / "layers"
    coopfile(session_user, root, ["mkdir -p /etc && echo first > /etc/which"])
    started = session_user.coop("-d", "-n", "old", "--", "sh", "-c",
                                "exec sleep 1000")
    assert started.returncode == 0, started.stderr
    [first] = list(layers.iterdir())
    coopfile(session_user, root, ["mkdir -p /etc && echo second > /etc/which"])
    assert session_user.coop("build").returncode == 0
    assert len(list(layers.iterdir())) == 2

    kept = session_user.coop("system", "prune")  # both used today
    assert kept.stdout.startswith(b"removed 0 built layer(s)"), kept.stderr
    everything = session_user.coop("system", "prune", "--keep-days", "0")
    assert everything.stdout.startswith(b"removed 1 built layer(s)"), everything.stderr
    assert list(layers.iterdir()) == [first]  # the live session's layer stays
    result = session_user.coop("run", "--", "cat", "/etc/which")  # rebuilt on demand
    assert result.stdout == b"second\n", result.stderr
    assert session_user.coop("kill", "old", "-f").returncode == 0
    gone = session_user.coop("system", "prune", "--keep-days", "0")
    assert gone.stdout.startswith(b"removed 2 built layer(s)"), gone.stderr
    assert list(layers.iterdir()) == []
