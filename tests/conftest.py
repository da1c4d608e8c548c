"""Fixtures: throwaway users, coop homes and projects for every test that runs coop."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import reach
from tests.helpers import THROWAWAY_UID, TOKEN, User, free_port, make_user

IS_ROOT = os.getuid() == 0


def _check_reachable() -> None:
    """The throwaway uid must be able to run this interpreter and import coop; if it cannot,
    the first line printed says how to fix it."""
    if not IS_ROOT:
        return
    fix = ("put the checkout and its .venv in a directory every user can read "
           "(e.g. under /tmp or /srv, not under /root)")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import coop, yaml"], capture_output=True,
            env={"PYTHONPATH": str(reach.TREE)},
            preexec_fn=lambda: reach.demote(THROWAWAY_UID))
    except (OSError, subprocess.SubprocessError) as error:
        pytest.exit(f"The tests cannot run {sys.executable} as uid {THROWAWAY_UID}: {fix}. "
                    f"({error})", returncode=2)
    if probe.returncode != 0:
        pytest.exit(f"uid {THROWAWAY_UID} cannot import coop with {sys.executable}: {fix}. "
                    f"({probe.stderr.decode().strip()[-300:]})", returncode=2)


def pytest_sessionstart(session: pytest.Session) -> None:
    _check_reachable()


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    """A temporary directory other users can traverse (pytest's own is 0700 for root)."""
    path = Path(tempfile.mkdtemp(prefix="coop-test-"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def user(world_tmp: Path) -> Iterator[User]:
    """An unprivileged user (a throwaway uid when the tests run as root)."""
    made = make_user(world_tmp, THROWAWAY_UID if IS_ROOT else os.getuid())
    yield made
    if IS_ROOT and str(made.home).startswith("/home/coop-test-"):
        subprocess.run(["rm", "-rf", str(made.home)], check=False)


@pytest.fixture(params=["unprivileged", "root"] if IS_ROOT else ["self"])
def any_user(request: pytest.FixtureRequest, world_tmp: Path) -> Iterator[User]:
    """Each sandbox test that takes this runs as an unprivileged uid and, under CI, as root."""
    uid = 0 if request.param == "root" else (THROWAWAY_UID if IS_ROOT else os.getuid())
    made = make_user(world_tmp, uid)
    yield made
    if IS_ROOT and str(made.home).startswith("/home/coop-test-"):
        subprocess.run(["rm", "-rf", str(made.home)], check=False)


@pytest.fixture
def session_user(user: User) -> Iterator[User]:
    """An unprivileged user whose daemon and sessions are cleaned up after the test."""
    user.extra_env["COOP_DAEMON_IDLE_TIMEOUT"] = "60"
    yield user
    user.coop("kill", "--all", "-f", timeout=120)
    user.coop("daemon", "stop", timeout=120)
    if IS_ROOT:
        subprocess.run(["pkill", "-9", "-u", str(user.uid)], check=False)


@pytest.fixture
def served(session_user: User) -> Iterator[tuple[User, str]]:
    """`coop serve` on a free loopback port, with the tests' token and a viewer link."""
    port = free_port()
    result = session_user.coop("serve", "--port", str(port), "--token", TOKEN, "--read-only")
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{port}/?token={TOKEN}" in result.stdout.decode()
    yield session_user, f"http://127.0.0.1:{port}"
