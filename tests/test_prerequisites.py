"""A machine without one of the tools some tests use: those tests skip, and the summary
(`-ra`, the suite's default) says which tool and how to install it, instead of failing with
FileNotFoundError or passing without having tested anything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def summary_of(tmp_path: Path, test_code: str, path: str) -> str:
    """Run one test file in its own pytest with PATH set to `path`; its output."""
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(test_code))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-q", "-p", "no:cacheprovider",
         "test_probe.py"], cwd=tmp_path, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PATH": path})
    output = result.stdout.decode()
    assert result.returncode == 0, output
    return output


def test_a_missing_tool_skips_with_the_install_line(tmp_path: Path) -> None:
    output = summary_of(tmp_path, """
        from tests.helpers import need, registry_server

        def test_needs_a_tool():
            need("coop-no-such-tool", install="apt-get install coop-no-such-package")

        def test_needs_a_registry():
            registry_server()
        """, path=str(tmp_path / "empty"))
    assert ("coop-no-such-tool not installed: apt-get install coop-no-such-package "
            "(README, Prerequisites)") in output
    if "2 skipped" in output:  # unless /usr/sbin or /sbin holds a registry
        assert ("docker-registry not installed: apt-get install docker-registry "
                "(README, Prerequisites)") in output


def test_a_dynamically_linked_busybox_skips_saying_which_package(tmp_path: Path) -> None:
    """Debian's plain `busybox` is dynamically linked: it cannot run in a base that holds
    nothing but itself, so the tests that build such bases ask for busybox-static."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "busybox").symlink_to(os.path.realpath(sys.executable))
    output = summary_of(tmp_path, """
        from tests.helpers import static_busybox

        def test_needs_busybox():
            static_busybox()
        """, path=str(bin_dir))
    assert (f"{bin_dir}/busybox is dynamically linked: apt-get install busybox-static "
            "(README, Prerequisites)") in output
