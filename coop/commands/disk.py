"""Disk commands: `coop build`, `coop image ls|rm|prune`, `coop volume ls|rm|prune`,
`coop system df`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from coop.commands.table import print_table
from coop.config.coopfile import load_config
from coop.errors import CoopError
from coop.images.store import ImageStore, disk_usage
from coop.paths import coop_paths
from coop.sandbox.plan import remove_tree


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


def build(workspace: Path | None, coopfile: Path | None, pull: bool, no_cache: bool) -> int:
    """Make the workspace's base exist (pulling its image when needed)."""
    from coop.images.reference import parse_reference
    from coop.sandbox.bases import resolve_config_base

    paths = coop_paths()
    config = load_config(paths, workspace, coopfile)
    if pull and config.image not in ("host",) and not config.image.startswith(("dir:", "tar:")):
        ImageStore(paths).pull(parse_reference(config.image), config.registries)
    layout = resolve_config_base(config, paths, no_cache=no_cache)
    layers = f", {len(layout.layers)} built layer(s)" if layout.layers else ""
    print(f"base ready: {config.image} ({layout.root_dir or 'the host system'}{layers})")
    return 0


def image(action: str, names: list[str], as_json: bool) -> int:
    store = ImageStore(coop_paths())
    if action == "ls":
        images = store.images_info()
        if as_json:
            print(json.dumps(images, indent=2))
            return 0
        if not images:
            print("No images. An `image:` in a Coopfile is pulled on first use or by "
                  "`coop build`.")
            return 0
        now = time.time()
        rows = [("IMAGE", "DIGEST", "SIZE", "PULLED")]
        for info in images:
            age = now - info.get("pulled", now)
            rows.append((", ".join(info["tags"]) or info["reference"], info["digest"][7:19],
                         human(info.get("size", 0)), f"{int(age // 3600)}h ago"
                         if age >= 3600 else f"{int(age // 60)}m ago"))
        print_table(rows)
        return 0
    if action == "rm":
        if not names:
            raise CoopError("name the image(s) to remove.", "`coop image ls` lists them.")
        for name in names:
            for removed in store.remove(name):
                print(f"removed {removed}")
        return 0
    print(f"freed {human(store.prune())}")
    return 0


def volume(action: str, names: list[str], as_json: bool) -> int:
    paths = coop_paths()
    volumes = paths.volumes_dir
    existing = sorted(p for p in volumes.glob("*") if p.is_dir()) if volumes.exists() else []
    if action == "ls":
        rows_json: list[dict[str, Any]] = [{"name": p.name, "size": disk_usage(p)}
                                           for p in existing]
        if as_json:
            print(json.dumps(rows_json, indent=2))
        elif not existing:
            print("No volumes. A bare name as a mount source (`cache:/cache`) makes one.")
        else:
            print_table([("VOLUME", "SIZE")] + [(v["name"], human(v["size"])) for v in rows_json])
        return 0
    if action == "rm":
        for name in names:
            target = volumes / name
            if not target.is_dir():
                raise CoopError(f"no volume named {name}.", "`coop volume ls` lists them.")
            remove_tree(target)
            print(f"removed {name}")
        return 0
    used = _volumes_in_use(paths.sessions_dir)
    freed = 0
    for path in existing:
        if path.name not in used:
            freed += disk_usage(path)
            remove_tree(path)
            print(f"removed {path.name}")
    print(f"freed {human(freed)}")
    return 0


def _live_sessions(sessions: Path) -> list[dict[str, Any]]:
    """What each live session recorded about itself (its data dir's meta.json)."""
    found = []
    for meta in sessions.glob("*/meta.json") if sessions.exists() else []:
        try:
            found.append(json.loads(meta.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _volumes_in_use(sessions: Path) -> set[str]:
    """Volumes named by the Coopfiles of live sessions' workspaces."""
    used: set[str] = set()
    for meta in _live_sessions(sessions):
        try:
            config = load_config(coop_paths(), Path(meta["workspace"]))
        except (CoopError, OSError, KeyError):
            continue
        used |= {m.volume for m in config.mounts if m.volume}
    return used


def system_df(as_json: bool) -> int:
    paths = coop_paths()
    store = ImageStore(paths)
    rows: list[dict[str, Any]] = []
    for info in store.images_info():
        rows.append({"kind": "image", "name": ", ".join(info["tags"]) or info["reference"],
                     "size": disk_usage(store.image_dir(info["digest"]))})
    rows.append({"kind": "layer cache", "name": "blobs", "size": disk_usage(store.blobs)})
    layers = paths.data_dir / "layers"
    for built in sorted(layers.glob("*/step.txt")) if layers.exists() else []:
        step = built.read_text().strip().splitlines()[0][:40]
        rows.append({"kind": "layer", "name": f"{built.parent.name[:12]} {step}",
                     "size": disk_usage(built.parent)})
    for base in sorted(paths.bases_dir.glob("*")) if paths.bases_dir.exists() else []:
        rows.append({"kind": "base", "name": base.name, "size": disk_usage(base)})
    for vol in sorted(paths.volumes_dir.glob("*")) if paths.volumes_dir.exists() else []:
        rows.append({"kind": "volume", "name": vol.name, "size": disk_usage(vol)})
    for session in sorted(paths.sessions_dir.glob("*")) if paths.sessions_dir.exists() else []:
        rows.append({"kind": "session", "name": session.name, "size": disk_usage(session)})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("KIND", "NAME", "SIZE")]
    table += [(r["kind"], r["name"], human(r["size"])) for r in rows]
    table.append(("total", "", human(sum(r["size"] for r in rows))))
    print_table(table)
    return 0


def system_prune(keep_days: float) -> int:
    """Reclaim disk: unfinished pulls and blobs no image uses, incomplete build layers
    (a build that died), and built layers that no live session stacks and nothing has
    used for `keep_days` (they are rebuilt, from the cache of earlier steps, on demand)."""
    paths = coop_paths()
    freed = ImageStore(paths).prune()
    in_use = _layers_in_use(paths.sessions_dir)
    layers = paths.data_dir / "layers"
    now = time.time()
    removed = 0
    for layer in sorted(layers.iterdir()) if layers.exists() else []:
        if not layer.is_dir() or str(layer) in in_use:
            continue
        marker = layer / "used" if (layer / "used").exists() else layer / "complete"
        try:
            age = now - marker.stat().st_mtime
        except FileNotFoundError:  # no `complete`: a build that died, or one running now
            age = now - layer.stat().st_mtime
            if age < 3600:
                continue
        else:
            if age < keep_days * 86400:
                continue
        freed += disk_usage(layer)
        remove_tree(layer)
        removed += 1
    print(f"removed {removed} built layer(s); freed {human(freed)}")
    return 0


def _layers_in_use(sessions: Path) -> set[str]:
    """Built layers stacked by live sessions (never removed under them)."""
    return {str(layer) for meta in _live_sessions(sessions) for layer in meta.get("layers", [])}
