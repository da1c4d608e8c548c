"""Building a base: `packages` and `setup` steps, each an overlay layer cached by hash.

Step i runs in a sandbox over the base and the layers of steps 1..i-1 (as root of the
sandbox's user namespace, with the host's network); what it writes — the overlay's upper
dir — is its layer, kept under `DATA/layers/KEY` where KEY hashes the base's identity and
every step up to this one. Editing the last step changes only the last key, so only it
runs again. A layer counts only once its `complete` marker exists (written after the
step succeeded and its directory was renamed into place), so a failed or killed build
leaves the good layers cached and nothing half-made that a later run would use.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from coop.config.coopfile import CoopConfig
from coop.errors import BaseError
from coop.paths import CoopPaths, ensure_private_dir
from coop.sandbox.identity import Identity
from coop.sandbox.plan import BaseLayout, build_plan, prepare, remove_tree

INSTALL = {
    "apt": "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
           "--no-install-recommends -o APT::Sandbox::User=root {pkgs}",
    "apk": "apk add --no-cache {pkgs}",
    "dnf": "dnf install -y {pkgs}",
    "pacman": "pacman -Sy --noconfirm {pkgs}",
    "pip": "python3 -m pip install --no-cache-dir --break-system-packages {pkgs} || "
           "python3 -m pip install --no-cache-dir {pkgs}",
    "npm": "npm install -g {pkgs}",
}
KEEP_LINES = 20
ROOT = Identity(0, 0, "root", "/root", "/root")


@dataclass(frozen=True)
class Step:
    label: str
    command: str


def steps_for(config: CoopConfig) -> list[Step]:
    steps = [Step(f"{manager}: {' '.join(pkgs)}",
                  INSTALL[manager].format(pkgs=" ".join(shlex.quote(p) for p in pkgs)))
             for manager, pkgs in config.packages.items() if pkgs]
    steps += [Step(f"setup: {command}", command) for command in config.setup]
    return steps


def base_key(image: str, layout: BaseLayout) -> str:
    """What the base's identity is: the unpacked image's directory is content-addressed."""
    return hashlib.sha256(f"{image}\0{layout.root_dir}".encode()).hexdigest()


def build_layers(config: CoopConfig, paths: CoopPaths, layout: BaseLayout,
                 no_cache: bool = False, run_missing: bool = True) -> BaseLayout:
    steps = steps_for(config)
    if not steps:
        return layout
    if layout.kind != "dir":
        raise BaseError("`packages` and `setup` need an image to build on; `image: host` uses "
                        "this machine's system as it is.",
                        "Set `image:` (e.g. debian:bookworm), or install on the host.")
    layers_dir = paths.data_dir / "layers"
    key = base_key(config.image, layout)
    built: list[str] = []
    for number, step in enumerate(steps, start=1):
        key = hashlib.sha256(f"{key}\0{step.command}".encode()).hexdigest()
        layer = layers_dir / key[:32]
        here = replace(layout, layers=tuple(reversed(built)))
        if (layer / "complete").exists() and not no_cache:
            print(f"step {number}/{len(steps)} cached: {step.label}", file=sys.stderr)
        elif not run_missing:
            raise BaseError(f"the base is not built (step {number}, {step.label}).",
                            "Run `coop build` in the project.")
        else:
            print(f"step {number}/{len(steps)} run: {step.label}", file=sys.stderr, flush=True)
            _run_step(config, paths, here, step, number, layer)
        built.append(str(layer / "fs"))
        (layer / "used").touch()  # for `coop system prune`: recently used layers stay
    return replace(layout, layers=tuple(reversed(built)))


def _run_step(config: CoopConfig, paths: CoopPaths, layout: BaseLayout, step: Step,
              number: int, layer: Path) -> None:
    from coop.config.coopfile import CoopConfig as Config
    from coop.sandbox.init import exit_code
    from coop.sandbox.launch import launch

    ensure_private_dir(paths.run_dir)
    layer.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{layer.name[:12]}-", dir=layer.parent))
    empty = work / "workspace"
    empty.mkdir()
    settings = Config(image=config.image, workspace=empty, workspace_path="/tmp/coop-build",
                      network_mode="host", limits={}, shell=["/bin/sh"])
    plan = build_plan(settings, ROOT, paths, name="coop-build", argv=["/bin/sh", "-c",
                      step.command], env={"DEBIAN_FRONTEND": "noninteractive"},
                      upper_root=work / "upper", stage=paths.run_dir / f"build-{os.getpid()}",
                      layout=layout)
    created = prepare(plan)
    plan.cwd = "/"  # after prepare(), which treats paths under the cwd as the workspace's
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        sandbox = launch(plan, (devnull, write_end, write_end))
    except BaseException:
        remove_tree(work)
        raise
    finally:
        os.close(write_end)
        os.close(devnull)
    tail: deque[str] = deque(maxlen=KEEP_LINES)
    with os.fdopen(read_end, "rb") as output:
        for raw in output:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            print(f"  │ {line}", file=sys.stderr, flush=True)
    _, status = os.waitpid(sandbox.pid, 0)
    sandbox.control.close()
    code = exit_code(status)
    try:
        os.rmdir(plan.stage)
    except OSError:
        pass
    if code != 0:
        remove_tree(work)
        shown = "\n".join(f"  {line}" for line in tail)
        raise BaseError(f"step {number} ({step.label}) failed with exit code {code}; the steps "
                        f"before it stay cached.\nIts last output:\n{shown}",
                        "Fix the step in the Coopfile and run `coop build` again.")
    fs = work / "upper" / "root"
    _forget(created, plan.files, fs)
    final = work / "layer"
    final.mkdir()
    os.rename(fs, final / "fs")
    (final / "step.txt").write_text(step.command + "\n")
    (final / "complete").write_text(f"{time.time()}\n")
    remove_tree(layer)  # a stale, incomplete one
    os.rename(final, layer)
    remove_tree(work)


def _forget(created: list[Path], files: dict[str, str], fs: Path) -> None:
    """Remove what coop itself put in the upper dir (mount points, generated files) unless
    the step changed it, so a layer holds only the step's own writes."""
    generated = {str(fs / path.lstrip("/")): content for path, content in files.items()}
    for path in sorted(created, key=lambda p: len(str(p)), reverse=True):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only when empty
            elif str(path) in generated and path.read_text() == generated[str(path)]:
                path.unlink()
        except OSError:
            continue
    for directory in sorted({p.parent for p in created}, key=lambda p: len(str(p)),
                            reverse=True):
        while directory != fs and str(directory).startswith(str(fs)):
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent
