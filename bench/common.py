"""Helpers shared by benchmarks: timing whole processes, medians, dropping root."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence

from tests import reach

BENCH_UID = 54322


def demote() -> None:
    """Run as an unprivileged throwaway uid when started as root: what users are."""
    if os.getuid() == 0:
        reach.demote(BENCH_UID)  # reaches this Python even if it lives under /root


def time_command(argv: Sequence[str], runs: int, env: dict[str, str], cwd: str) -> list[float]:
    """Wall times in ms of `runs` runs of a whole process, after one warm-up run."""
    times = []
    for index in range(runs + 1):
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, preexec_fn=demote,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = (time.perf_counter() - start) * 1000
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
        if index:
            times.append(elapsed)
    return times


def time_call(func: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(times):7.1f} ms   p90 {p90:7.1f} ms   (n={len(times)})"


def rerun_unprivileged(name: str, **extra_env: str) -> bool:
    """Started as root: run `python -m bench NAME` again as the bench uid with a throwaway
    HOME and COOP_HOME (what users are), clean up after it, and return True. Otherwise
    return False: the caller measures."""
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    if os.getuid() != 0:
        return False
    home = Path(tempfile.mkdtemp(prefix="coop-bench-"))
    os.chmod(home, 0o755)
    os.chown(home, BENCH_UID, BENCH_UID)
    env = {"HOME": str(home), "COOP_HOME": str(home / "coop"), "PATH": "/usr/bin:/bin",
           "TERM": "xterm-256color", "LANG": "C.UTF-8", "COOP_DAEMON_IDLE_TIMEOUT": "300",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **extra_env}
    try:
        subprocess.run([sys.executable, "-m", "bench", name], env=env, cwd=home,
                       preexec_fn=demote, check=True)
    finally:
        subprocess.run(["pkill", "-9", "-u", str(BENCH_UID)], check=False)
        shutil.rmtree(home, ignore_errors=True)
    return True
