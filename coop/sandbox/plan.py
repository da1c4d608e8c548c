"""From a `CoopConfig` to a `SandboxPlan`: everything the sandbox will be, as data.

The plan is computed on the host side as the invoking user: which host directories are
overlaid or bound, which mount points and generated files (`/etc/passwd`, `/etc/hosts`,
`/etc/resolv.conf`) must be prepared in the upper dir, and the command's environment.
`prepare()` does the host-side file work; `coop.sandbox.launch` applies the mount ops.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from coop.config.coopfile import DEFAULT_PATH, CoopConfig
from coop.config.schema import MountSpec
from coop.errors import SandboxError
from coop.paths import CoopPaths
from coop.sandbox.identity import Identity, group_with, passwd_with
from coop.sandbox.mounts import (
    Bind,
    Dev,
    Mask,
    MountOp,
    Overlay,
    Proc,
    ReadOnlyRoot,
    Symlink,
    Sysfs,
    Tmpfs,
)

# Top-level host directories that make up the `host` base; everything else is absent.
HOST_SYSTEM_DIRS = ("bin", "etc", "gnu", "lib", "lib32", "lib64", "libx32", "nix", "opt",
                    "sbin", "srv", "usr", "var")
# Places inside the exposed system dirs that hand out control of the host (SPEC §5.3).
HOST_MASKS = ("/var/run/docker.sock", "/var/run/podman", "/var/run/containerd",
              "/var/lib/docker", "/var/lib/containers", "/var/lib/lxd", "/etc/coop")


def host_mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].encode().decode("unicode_escape") for line in f]


@dataclass
class BaseLayout:
    """How the base's root is assembled and where a sandbox path lives on the host.

    `lower` is the read-only source of a path, `upper` where a session's copy of it goes;
    `upper` None means the path is read-only (a recursively bound host dir).
    """

    kind: str  # "host" or "dir"
    root_dir: str | None = None  # for "dir": the bottom layer (the image's rootfs)
    layers: tuple[str, ...] = ()  # for "dir": built setup layers above it, topmost first
    overlaid: tuple[str, ...] = ()  # for "host": top-level dirs overlaid
    bound: tuple[str, ...] = ()  # for "host": top-level dirs bound read-only (have submounts)
    links: tuple[tuple[str, str], ...] = ()  # for "host": (name, link target)
    env: tuple[tuple[str, str], ...] = ()
    """An OCI image's `Env` (its PATH above all): under the Coopfile's `env`, as Docker does."""

    def lowers(self) -> tuple[str, ...]:
        """Overlay lower dirs, topmost first."""
        assert self.root_dir is not None
        return (*self.layers, self.root_dir)

    def locate(self, path: str, upper_root: Path) -> tuple[str | None, Path | None]:
        """(lower host path, upper host path) of an absolute sandbox path."""
        rel = path.strip("/")
        if self.kind == "dir":
            for layer in self.lowers():
                candidate = os.path.join(layer, rel)
                if os.path.lexists(candidate):
                    return candidate, upper_root / rel
            return os.path.join(self.lowers()[-1], rel), upper_root / rel
        top = rel.split("/", 1)[0]
        if top in self.overlaid:
            return "/" + rel, upper_root / rel
        if top in self.bound:
            return "/" + rel, None
        return None, None  # on the stage's own tmpfs


def host_layout() -> BaseLayout:
    points = host_mount_points()
    overlaid: list[str] = []
    bound: list[str] = []
    links: list[tuple[str, str]] = []
    for name in HOST_SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            links.append((name, os.readlink(path)))
        elif os.path.isdir(path):
            (bound if any(p.startswith(path + "/") for p in points) else overlaid).append(name)
    return BaseLayout("host", overlaid=tuple(overlaid), bound=tuple(bound), links=tuple(links))


@dataclass
class SandboxPlan:
    """Everything needed to start one sandbox, computed before any syscall."""

    name: str
    identity: Identity
    argv: list[str]
    env: dict[str, str]
    cwd: str
    network: str
    stage: str
    upper_root: Path
    ops: list[MountOp]
    limits: dict[str, int]
    tty_size: tuple[int, int] | None = None
    die_with_parent: bool = True
    files: dict[str, str] = field(default_factory=dict)
    """Generated files, sandbox path -> content, written into the upper dir by prepare()."""
    mount_points: list[tuple[str, bool]] = field(default_factory=list)
    """(sandbox path, is_dir) mount points to create in the upper dir by prepare()."""
    layout: BaseLayout = field(default_factory=lambda: BaseLayout("host"))
    proxy_port: int | None = None
    """In `proxy` mode, the port inside the sandbox where coop's proxy listens."""

    def describe(self) -> list[str]:
        return [op.describe() for op in self.ops]


def expand_target(target: str, ident: Identity) -> str:
    if target == "~" or target.startswith("~/"):
        return os.path.normpath(ident.home + target[1:])
    return os.path.normpath(target)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def build_plan(config: CoopConfig, ident: Identity, paths: CoopPaths, *, name: str,
               argv: list[str], env: dict[str, str], upper_root: Path, stage: Path,
               layout: BaseLayout, tty_size: tuple[int, int] | None = None,
               term: str = "xterm-256color", lang: str = "C.UTF-8") -> SandboxPlan:
    """Plan a sandbox of `config`'s workspace running `argv`."""
    ws_path = os.path.normpath(config.workspace_path)
    if config.network_mode == "veth":
        from coop.net.veth import require_root

        require_root()
    own_netns = config.network_mode != "host"
    ops: list[MountOp] = []
    if layout.kind == "dir":
        ops.append(Overlay("/", layout.lowers(), str(upper_root / "root"),
                           str(upper_root / "work" / "root")))
    else:
        ops.append(Tmpfs("/"))
        for top in layout.overlaid:
            ops.append(Overlay(top, ("/" + top,), str(upper_root / "root" / top),
                               str(upper_root / "work" / top)))
        ops.extend(Bind("/" + top, top, read_only=True) for top in layout.bound)
        ops.extend(Symlink(target, top) for top, target in layout.links)
    ops += [Proc(), Dev(), Tmpfs("/tmp", "1777"), Tmpfs("/run"), Sysfs(own_netns)]
    if layout.kind == "host":
        ops.extend(Mask(path) for path in HOST_MASKS)
    plan = SandboxPlan(name=name, identity=ident, argv=argv, env={}, cwd=ws_path,
                       network=config.network_mode, stage=str(stage), upper_root=upper_root,
                       ops=ops, limits=dict(config.limits), tty_size=tty_size, layout=layout)
    for special in ("/proc", "/dev", "/tmp", "/run", "/sys"):
        plan.mount_points.append((special, True))
    ops.append(Bind(str(upper_root / "home"), ident.home))
    plan.mount_points.append((ident.home, True))
    ops.append(Bind(str(config.workspace), ws_path))
    plan.mount_points.append((ws_path, True))
    for spec in config.mounts:
        ops.append(_mount_op(spec, ident, paths, ws_path))
        target = expand_target(spec.target, ident)
        if not _under(target, ws_path):
            plan.mount_points.append((target, ops[-1].is_dir if isinstance(ops[-1], Bind)
                                      else True))
    # coop's own files must never be reachable, whatever COOP_HOME points at.
    for own in paths.all_dirs():
        visible = _visible_path(str(own), layout, config, ident, ws_path)
        if visible:
            ops.append(Mask(visible))
    if layout.kind == "host":
        ops.append(ReadOnlyRoot())
    shell = config.shell[0] if config.shell else "/bin/sh"
    plan.files = _generated_files(plan, layout, shell)
    proxy: dict[str, str] = {}
    if config.network_mode == "proxy":
        from coop.net.proxy import PROXY_PORT, proxy_env

        plan.proxy_port = PROXY_PORT
        proxy = proxy_env(PROXY_PORT)
    plan.env = {"PATH": DEFAULT_PATH, "TERM": term, "LANG": lang, **dict(layout.env),
                **proxy, **env,
                "HOME": ident.home, "USER": ident.name,
                "COOP_SESSION": name, "COOP_WORKSPACE": ws_path}
    return plan


def _visible_path(host_path: str, layout: BaseLayout, config: CoopConfig, ident: Identity,
                  ws_path: str) -> str | None:
    """Where a host path shows inside the sandbox, if it does at all."""
    workspace = str(config.workspace)
    if _under(host_path, workspace):
        return ws_path + host_path[len(workspace):]
    for spec in config.mounts:
        if spec.source and _under(host_path, spec.source):
            return expand_target(spec.target, ident) + host_path[len(spec.source):]
    if layout.kind == "host" and host_path.strip("/").split("/", 1)[0] in (
            layout.overlaid + layout.bound):
        return host_path
    return None


def _mount_op(spec: MountSpec, ident: Identity, paths: CoopPaths, ws_path: str) -> Bind:
    target = expand_target(spec.target, ident)
    if spec.volume is not None:
        source = paths.volumes_dir / spec.volume
        if not source.exists():
            _seed_volume(source, spec.target, ident)
        return Bind(str(source), target, spec.read_only, True)
    assert spec.source is not None
    real = os.path.realpath(spec.source)
    if real != spec.source:  # changed since validation: a symlink swapped in
        raise SandboxError(f"mount `{spec.text}`: {spec.source} became a symlink; refusing it.")
    try:
        is_dir = stat.S_ISDIR(os.stat(real).st_mode)
    except FileNotFoundError:
        raise SandboxError(f"mount `{spec.text}`: {real} does not exist on the host.",
                           "Create it, or remove the entry from `mounts`.") from None
    return Bind(real, target, spec.read_only, is_dir)


def _seed_volume(source: Path, target: str, ident: Identity) -> None:
    """A new named volume starts as a copy of the matching host path, if there is one
    (`claude-config:~/.claude` starts with your ~/.claude: the agent is logged in)."""
    source.parent.mkdir(parents=True, exist_ok=True)
    # Only below the home: a volume over the whole home must not copy every secret in it.
    host = ident.host_home + target[1:] if target.startswith("~/") else None
    tmp = source.with_name(f".{source.name}.seeding-{os.getpid()}")
    remove_tree(tmp)
    if host and os.path.isdir(host):
        shutil.copytree(host, tmp, symlinks=True, ignore_dangling_symlinks=True)
    else:
        tmp.mkdir()
    os.rename(tmp, source)


def _read_lower(layout: BaseLayout, path: str) -> str:
    lower, _ = layout.locate(path, Path("/"))
    if lower is None:
        return ""
    try:
        if os.path.islink(lower):
            return ""
        with open(lower, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _generated_files(plan: SandboxPlan, layout: BaseLayout, shell: str) -> dict[str, str]:
    if layout.kind == "host" and "etc" not in layout.overlaid:
        return {}  # a read-only host /etc (it has submounts): nothing can be added
    ident = plan.identity
    files = {
        "/etc/passwd": passwd_with(_read_lower(layout, "/etc/passwd"), ident, shell),
        "/etc/group": group_with(_read_lower(layout, "/etc/group"), ident),
        "/etc/hostname": plan.name + "\n",
        "/etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                      f"127.0.1.1\t{plan.name}\n",
    }
    if plan.network == "host":
        try:
            with open("/etc/resolv.conf", encoding="utf-8") as f:
                files["/etc/resolv.conf"] = f.read()
        except OSError:
            pass
    elif plan.network == "veth":
        from coop.net.veth import resolv_conf

        files["/etc/resolv.conf"] = resolv_conf()
    elif plan.network == "proxy":
        files["/etc/resolv.conf"] = ("# coop: no DNS inside; HTTP(S) goes through coop's proxy "
                                     "at $HTTPS_PROXY, which resolves names itself\n")
    else:
        files["/etc/resolv.conf"] = "# coop: this sandbox has no network access\n"
    return files


def _check_no_symlinks(root: Path | str, rel: str, what: str) -> None:
    """Refuse a path whose components are symlinks under `root` (they could lead out)."""
    current = str(root)
    for part in [p for p in rel.split("/") if p]:
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise SandboxError(f"{what} passes through a symlink ({current}); refusing it.",
                               "Mount targets must be real directories in the base.")
        if not os.path.exists(current):
            return


def prepare(plan: SandboxPlan) -> list[Path]:
    """Host-side work before the namespaces: upper dirs, mount points, generated files.

    Returns what it created in the upper dir (a build step removes these from its layer)."""
    created: list[Path] = []
    upper = plan.upper_root
    for sub in ("root", "work", "home"):
        (upper / sub).mkdir(parents=True, exist_ok=True)
    if plan.layout.kind == "host":
        for top in plan.layout.overlaid:
            (upper / "root" / top).mkdir(exist_ok=True)
            (upper / "work" / top).mkdir(exist_ok=True)
    else:
        (upper / "work" / "root").mkdir(exist_ok=True)
    Path(plan.stage).mkdir(parents=True, exist_ok=True)
    for path, is_dir in plan.mount_points:
        made = _prepare_mount_point(plan, path, is_dir)
        if made is not None:
            created.append(made)
    for path, content in plan.files.items():
        _, up = plan.layout.locate(path, upper / "root")
        if up is None:
            continue
        created.append(up)
        _check_no_symlinks(upper / "root", path, f"generated file {path}")
        up.parent.mkdir(parents=True, exist_ok=True)
        tmp = up.with_name(up.name + ".coop-tmp")
        tmp.write_text(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, up)
    return created


def _prepare_mount_point(plan: SandboxPlan, path: str, is_dir: bool) -> Path | None:
    ident = plan.identity
    lower: str | None
    up: Path | None
    if _under(path, ident.home) and path != ident.home:
        lower, up = None, plan.upper_root / "home" / os.path.relpath(path, ident.home)
        base = plan.upper_root / "home"
    elif _under(path, plan.cwd):
        return None  # inside the workspace bind: mounted over what the project has there
    else:
        lower, up = plan.layout.locate(path, plan.upper_root / "root")
        base = plan.upper_root / "root"
    if lower is not None:
        for lower_root in plan.layout.lowers() if plan.layout.kind == "dir" else ("/",):
            _check_no_symlinks(lower_root, path, f"mount target {path}")
        if os.path.lexists(lower):
            if os.path.isdir(lower) == is_dir:
                return None
        elif up is None:
            raise SandboxError(f"mount target {path} does not exist in the read-only {lower}.")
    if up is None:
        return None  # on the stage tmpfs: created when mounting
    _check_no_symlinks(base, os.path.relpath(up, base), f"mount target {path}")
    if is_dir:
        up.mkdir(parents=True, exist_ok=True)
    elif not up.exists():
        up.parent.mkdir(parents=True, exist_ok=True)
        up.touch()
    return up


def remove_tree(path: Path) -> None:
    """Delete an upper dir, including overlayfs work dirs the kernel left mode 000."""
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path, ignore_errors=True)
