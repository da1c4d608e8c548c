"""Sandbox start: `coop run -- true` against `unshare` and `bwrap`, and where the time goes.

Whole-process wall time, as an unprivileged user, medians over RUNS runs. The breakdown
runs the same phases in-process as the same user: interpreter start, CLI import, config
loading, planning (host-side file work), the sandbox itself (namespaces, mounts, exec and
exit of `true`), and tearing down the upper dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import BENCH_UID, demote, summary, time_command

RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def _phases() -> str:
    """Run in a child as the bench user: prints one line per phase."""
    code = r"""
import os, sys, time
from bench.common import time_call, summary
from pathlib import Path
N = int(sys.argv[1])
from coop.paths import coop_paths, ensure_private_dir
from coop.config.coopfile import load_config
from coop.sandbox.bases import resolve_base
from coop.sandbox.identity import current_identity
from coop.sandbox.plan import build_plan, prepare, remove_tree
from coop.sandbox.launch import launch
paths = coop_paths()
ensure_private_dir(paths.run_dir); ensure_private_dir(paths.data_dir)
ident = current_identity()
state = {}
def config():
    state["config"] = load_config(paths)
def plan():
    c = state["config"]
    p = build_plan(c, ident, paths, name="bench", argv=["true"], env={},
                   upper_root=paths.sessions_dir / "bench", stage=paths.run_dir / "bench",
                   layout=resolve_base(c.image, paths))
    prepare(p)
    state["plan"] = p
def sandbox():
    sb = launch(state["plan"])
    os.waitpid(sb.pid, 0)
def teardown():
    remove_tree(paths.sessions_dir / "bench")
rows = []
for name, fn in (("load config", config), ("plan + prepare", plan),
                 ("sandbox: unshare..exec..exit", sandbox), ("teardown", teardown)):
    times = []
    for _ in range(N):
        config(); plan()
        if name == "teardown":
            sb = launch(state["plan"]); os.waitpid(sb.pid, 0)
        times += time_call(fn, 1)
        if name != "teardown":
            teardown()
    print(f"  {name:32s} {summary(times)}")
"""
    env = _env()
    result = subprocess.run([sys.executable, "-c", code, str(RUNS)], env=env, cwd=env["HOME"],
                            preexec_fn=demote, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr)
    return result.stdout


_HOME = Path(tempfile.mkdtemp(prefix="coop-bench-"))


def _env() -> dict[str, str]:
    return {"HOME": str(_HOME), "COOP_HOME": str(_HOME / "coop"), "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def main() -> None:
    os.chmod(_HOME, 0o755)
    if os.getuid() == 0:
        os.chown(_HOME, BENCH_UID, BENCH_UID)
    env = _env()
    cwd = str(_HOME)
    print(f"sandbox start, whole process, as uid {BENCH_UID if os.getuid() == 0 else os.getuid()}"
          f", {RUNS} runs each")
    rows: list[tuple[str, list[str]]] = [
        ("python -c pass (interpreter)", [sys.executable, "-c", "pass"]),
        ("python -c 'import coop.cli'", [sys.executable, "-c", "import coop.cli"]),
        ("coop run -- true", [sys.executable, "-m", "coop", "run", "--", "true"]),
        ("coop run --network none -- true",
         [sys.executable, "-m", "coop", "run", "--network", "none", "--", "true"]),
        ("unshare -Urmpf --mount-proc true",
         ["unshare", "-Urmpf", "--mount-proc", "true"]),
    ]
    if shutil.which("bwrap"):
        rows.append(("bwrap --unshare-all (host /) true",
                     ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev",
                      "--proc", "/proc", "--tmpfs", "/tmp", "true"]))
    else:
        print("  (bwrap not installed: apt-get install bubblewrap to compare)")
    for label, argv in rows:
        print(f"  {label:32s} {summary(time_command(argv, RUNS, env, cwd))}", flush=True)
    print("where the time of `coop run` goes (in-process phases, same user):")
    print(_phases(), end="")
    shutil.rmtree(_HOME, ignore_errors=True)
