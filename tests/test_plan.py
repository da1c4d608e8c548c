"""The sandbox plan as data, before any syscall: what is overlaid, bound, masked, absent."""

from __future__ import annotations

import os
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from coop.config.coopfile import CoopConfig
from coop.config.schema import MountSpec
from coop.errors import SandboxError
from coop.paths import coop_paths
from coop.sandbox.identity import Identity
from coop.sandbox.mounts import Bind, Mask, Overlay, ReadOnlyRoot, Tmpfs
from coop.sandbox.plan import BaseLayout, build_plan, prepare
from coop.sandbox.unpack import unpack_tar

IDENT = Identity(1000, 1000, "dev", "/home/dev", "/home/dev")
HOST = BaseLayout("host", overlaid=("etc", "opt", "usr", "var"), bound=("srv",),
                  links=(("bin", "usr/bin"),))


def plan_for(tmp_path: Path, config: CoopConfig, layout: BaseLayout = HOST) -> object:
    paths = coop_paths({"COOP_HOME": str(tmp_path / "coop")})
    return build_plan(config, IDENT, paths, name="app", argv=["true"], env={"K": "v"},
                      upper_root=tmp_path / "upper", stage=tmp_path / "stage", layout=layout)


def test_host_base_overlays_system_dirs_and_nothing_else(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, CoopConfig(workspace=tmp_path))
    ops = plan.ops  # type: ignore[attr-defined]
    assert ops[0] == Tmpfs("/")
    overlays = [op.dst for op in ops if isinstance(op, Overlay)]
    assert overlays == ["etc", "opt", "usr", "var"]
    assert Bind("/srv", "srv", read_only=True) in ops
    targets = {getattr(op, "dst", "").strip("/") for op in ops}
    for absent in ("home", "root", "mnt", "media", "boot", "work", "tmp/.X11-unix"):
        assert absent not in targets
    assert "home/dev" in targets  # the user's own (empty, per-session) home
    assert Mask("/var/run/docker.sock") in ops and Mask("/var/lib/docker") in ops
    assert isinstance(ops[-1], ReadOnlyRoot)
    assert Bind(str(tmp_path), "/workspace") in ops


def test_environment_is_exactly_the_documented_one(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, CoopConfig(workspace=tmp_path, network_mode="none"))
    assert set(plan.env) == {"PATH", "TERM", "LANG", "HOME", "USER", "COOP_SESSION",  # type: ignore[attr-defined]
                             "COOP_WORKSPACE", "K"}
    proxied = plan_for(tmp_path, CoopConfig(workspace=tmp_path))  # the default: proxy
    assert proxied.env["HTTPS_PROXY"] == proxied.env["http_proxy"] == "http://127.0.0.1:3128"  # type: ignore[attr-defined]
    assert proxied.env["NO_PROXY"] == "localhost,127.0.0.1,::1"  # type: ignore[attr-defined]


def test_coop_home_under_an_exposed_dir_is_masked(tmp_path: Path) -> None:
    paths = coop_paths({"COOP_HOME": "/var/lib/coop-x"})
    plan = build_plan(CoopConfig(workspace=tmp_path), IDENT, paths, name="a", argv=["true"],
                      env={}, upper_root=tmp_path / "u", stage=tmp_path / "s", layout=HOST)
    assert Mask("/var/lib/coop-x/data") in plan.ops
    assert Mask("/var/lib/coop-x/run") in plan.ops


def test_named_volume_and_home_mount(tmp_path: Path) -> None:
    src = tmp_path / "gitconfig"
    src.write_text("x")
    config = CoopConfig(workspace=tmp_path, mounts=[
        MountSpec(None, "cache", "/cache", False, "cache:/cache"),
        MountSpec(str(src), None, "~/.gitconfig", True, "…")])
    plan = plan_for(tmp_path, config)
    assert Bind(str(tmp_path / "coop" / "data" / "volumes" / "cache"), "/cache") in plan.ops  # type: ignore[attr-defined]
    assert Bind(str(src), "/home/dev/.gitconfig", True, False) in plan.ops  # type: ignore[attr-defined]


def test_missing_mount_source_is_a_clear_error(tmp_path: Path) -> None:
    config = CoopConfig(workspace=tmp_path, mounts=[
        MountSpec(str(tmp_path / "gone"), None, "/x", False, "~/gone:/x")])
    with pytest.raises(SandboxError, match=r"mount `~/gone:/x`: .*gone does not exist"):
        plan_for(tmp_path, config)


def test_mount_target_through_a_symlink_in_the_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "etc").mkdir(parents=True)
    (base / "data").symlink_to("/etc")
    src = tmp_path / "src"
    src.mkdir()
    config = CoopConfig(workspace=tmp_path, mounts=[
        MountSpec(str(src), None, "/data/x", False, "src:/data/x")])
    plan = plan_for(tmp_path, config, BaseLayout("dir", root_dir=str(base)))
    with pytest.raises(SandboxError, match="passes through a symlink"):
        prepare(plan)  # type: ignore[arg-type]


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o4755  # setuid: must not survive
    return info


def test_unpack_refuses_every_way_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("intact")
    root = tmp_path / "root"
    root.mkdir()
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([
        _entry("../escape"),
        _entry("/abs-escape"),
        _entry("link", tarfile.SYMTYPE, str(outside)),
        _entry("link/victim"),                        # write through a symlink it made
        _entry("hard", tarfile.LNKTYPE, "../outside/victim"),
        _entry("rel", tarfile.SYMTYPE, "../../outside"),
        _entry("rel/new"),
        _entry("ok/file"),
        _entry("dev", tarfile.CHRTYPE),
    ], {"../escape": b"x", "/abs-escape": b"x", "link/victim": b"pwned", "rel/new": b"x",
        "ok/file": b"fine"}))
    report = unpack_tar(archive, root)
    assert (outside / "victim").read_text() == "intact"
    assert sorted(os.listdir(outside)) == ["victim"]
    assert not (tmp_path / "escape").exists()
    assert (root / "ok" / "file").read_bytes() == b"fine"
    assert not (root / "ok" / "file").stat().st_mode & 0o6000
    assert (root / "abs-escape").read_bytes() == b"x"  # absolute names land inside
    assert len(report.skipped) == 5  # ../, link/victim, hard, rel/new, dev
