"""Resolving a Coopfile `image:` to a base layout: the host, a directory or a tarball.

Tarballs are unpacked once into the data dir, keyed by their path, size and mtime, into a
temporary directory renamed into place only when complete: a killed unpack leaves nothing
that a later run would trust.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from coop.config.coopfile import CoopConfig
from coop.errors import BaseError
from coop.paths import CoopPaths
from coop.sandbox.plan import BaseLayout, host_layout, remove_tree


def resolve_base(image: str, paths: CoopPaths,
                 registries: dict[str, dict[str, Any]] | None = None,
                 pull: bool = True) -> BaseLayout:
    if image == "host":
        return host_layout()
    if image.startswith("dir:"):
        root = image[4:]
        if not os.path.isdir(root):
            raise BaseError(f"image {image}: {root} is not a directory.",
                            "Fix the path in the Coopfile's `image:`.")
        return BaseLayout("dir", root_dir=os.path.realpath(root))
    if image.startswith("tar:"):
        return BaseLayout("dir", root_dir=str(_unpacked_tar(Path(image[4:]), paths)))
    from coop.images.reference import parse_reference
    from coop.images.store import ImageStore

    ref = parse_reference(image)
    store = ImageStore(paths)
    rootfs = store.lookup(ref)
    if rootfs is None:
        if not pull:
            raise BaseError(f"image {image} is not pulled yet.", "Run `coop build` first.")
        rootfs = store.pull(ref, registries or {})
    return BaseLayout("dir", root_dir=str(rootfs), env=store.image_env(rootfs))


def _unpacked_tar(archive: Path, paths: CoopPaths) -> Path:
    import hashlib

    try:
        st = archive.stat()
    except OSError as exc:
        raise BaseError(f"image tar:{archive}: {exc.strerror}.",
                        "Fix the path in the Coopfile's `image:`.") from None
    key = hashlib.sha256(f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    target = paths.bases_dir / f"tar-{key.hexdigest()[:24]}"
    if target.is_dir():
        return target
    from coop.sandbox.unpack import unpack_tar

    paths.bases_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=paths.bases_dir))
    try:
        unpack_tar(archive, tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, target)
    except Exception as exc:
        remove_tree(tmp)
        if target.is_dir():  # another coop unpacked it meanwhile
            return target
        raise BaseError(f"image tar:{archive}: cannot unpack: {exc}.") from None
    return target


def resolve_config_base(config: CoopConfig, paths: CoopPaths, pull: bool = True,
                        build: bool = True, no_cache: bool = False) -> BaseLayout:
    """The base of a workspace: its image, plus its `packages` and `setup` layers (built
    now unless `build` is False, then they must exist)."""
    from coop.images.build import build_layers

    layout = resolve_base(config.image, paths, config.registries, pull=pull)
    return build_layers(config, paths, layout, no_cache=no_cache, run_missing=build)
