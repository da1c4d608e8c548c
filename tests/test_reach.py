"""The tests' own plumbing: a throwaway uid reaches a Python that lives under /root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import reach
from tests.helpers import THROWAWAY_UID

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="only root drops to a throwaway uid")


def test_a_path_under_a_private_directory_is_reachable_and_nothing_beside_it(
        world_tmp: Path) -> None:
    private = world_tmp / "root-home"
    tool = private / ".pyenv" / "versions" / "3.99"
    tool.mkdir(parents=True)
    (tool / "hello").write_text("from the interpreter\n")
    (private / "secret").write_text("root's own\n")
    private.chmod(0o700)
    exposure = reach.plan([str(tool)])
    assert exposure.blockers == (str(private),)

    def cat(path: Path, expose: reach.Exposure) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["cat", str(path)], capture_output=True, text=True,
                              preexec_fn=lambda: reach.demote(THROWAWAY_UID, exposure=expose))

    assert "Permission denied" in cat(tool / "hello", reach.plan([])).stderr
    assert cat(tool / "hello", exposure).stdout == "from the interpreter\n"
    hidden = cat(private / "secret", exposure)
    assert hidden.returncode != 0 and "No such file" in hidden.stderr
    assert (private / "secret").read_text() == "root's own\n"  # the host's view is unchanged
