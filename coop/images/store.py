"""The image store: a shared blob cache and unpacked bases, both content-addressed.

    DATA/blobs/sha256/HEX            compressed layers, verified, shared by every image
    DATA/images/MANIFEST-HEX/        one unpacked image: rootfs/ and image.json
    DATA/images/refs.json            "registry/repo:tag" -> manifest digest

An image directory appears (by rename) only once every layer is unpacked, so a killed
pull leaves at most a `.tmp-*` directory that nothing trusts and `coop image prune`
removes. A second image sharing layers downloads only what is new.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from coop.errors import BaseError
from coop.images.reference import Reference, parse_reference
from coop.paths import CoopPaths
from coop.sandbox.plan import remove_tree

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARALLEL_DOWNLOADS = 3


class ImageStore:
    def __init__(self, paths: CoopPaths) -> None:
        self.paths = paths
        self.blobs = paths.data_dir / "blobs" / "sha256"
        self.images = paths.data_dir / "images"
        self.refs_file = self.images / "refs.json"

    # -- lookup -----------------------------------------------------------------------
    def refs(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.refs_file.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _save_refs(self, refs: dict[str, str]) -> None:
        self.images.mkdir(parents=True, exist_ok=True)
        tmp = self.refs_file.with_name(f".refs.{os.getpid()}.json")
        tmp.write_text(json.dumps(refs, indent=1, sort_keys=True))
        os.replace(tmp, self.refs_file)

    def image_dir(self, manifest_digest: str) -> Path:
        return self.images / manifest_digest.removeprefix("sha256:")

    def lookup(self, ref: Reference) -> Path | None:
        """The unpacked rootfs of a pulled reference, if complete."""
        digest = ref.digest or self.refs().get(str(ref))
        if digest and (self.image_dir(digest) / "image.json").exists():
            return self.image_dir(digest) / "rootfs"
        return None

    @staticmethod
    def image_env(rootfs: Path) -> tuple[tuple[str, str], ...]:
        """The image config's `Env` ("K=V" entries) recorded beside its rootfs."""
        info = json.loads((rootfs.parent / "image.json").read_text())
        pairs = (str(entry).partition("=") for entry in info.get("env") or [])
        return tuple((key, value) for key, sep, value in pairs if key and sep)

    def images_info(self) -> list[dict[str, Any]]:
        out = []
        refs = self.refs()
        for directory in sorted(self.images.glob("*/image.json")):
            info = json.loads(directory.read_text())
            info["tags"] = sorted(r for r, d in refs.items() if d == info["digest"])
            out.append(info)
        return out

    # -- pulling ----------------------------------------------------------------------
    def pull(self, ref: Reference, registries: dict[str, dict[str, Any]],
             quiet: bool = False) -> Path:
        return asyncio.run(self._pull(ref, registries, quiet))

    async def _pull(self, ref: Reference, registries: dict[str, dict[str, Any]],
                    quiet: bool) -> Path:
        from coop.images.registry import RegistryClient

        async with RegistryClient(registries) as client:
            manifest = await client.manifest(ref)
            target = self.image_dir(manifest.digest)
            if not (target / "image.json").exists():
                config = await client.config(ref, manifest)
                with _progress(quiet) as report:
                    semaphore = asyncio.Semaphore(PARALLEL_DOWNLOADS)

                    async def fetch(layer: dict[str, Any]) -> None:
                        async with semaphore:
                            await client.blob(ref, layer["digest"], self.blob(layer["digest"]),
                                              report.callback(layer))

                    await asyncio.gather(*(fetch(layer) for layer in manifest.layers))
                await asyncio.get_running_loop().run_in_executor(
                    None, self._unpack, ref, manifest.digest, manifest.layers, config)
        refs = self.refs()
        refs[str(ref)] = manifest.digest
        self._save_refs(refs)
        return target / "rootfs"

    def blob(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")

    def _unpack(self, ref: Reference, digest: str, layers: list[dict[str, Any]],
                config: dict[str, Any]) -> None:
        from coop.sandbox.unpack import unpack_stream

        target = self.image_dir(digest)
        tmp = self.images / f".tmp-{digest.removeprefix('sha256:')[:16]}-{os.getpid()}"
        remove_tree(tmp)
        (tmp / "rootfs").mkdir(parents=True)
        skipped: list[str] = []
        # The config names each layer's uncompressed digest: the blob digests prove what
        # was downloaded, these prove it is the image the config describes.
        diff_ids = config.get("rootfs", {}).get("diff_ids") or []
        try:
            for index, layer in enumerate(layers):
                with open(self.blob(layer["digest"]), "rb") as raw, \
                        _decompressed(raw) as stream:
                    hashing = _Hashing(stream)
                    with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                        skipped += unpack_stream(tar, tmp / "rootfs", whiteouts=True).skipped
                    actual = hashing.finish()
                if len(diff_ids) == len(layers) and actual != diff_ids[index]:
                    raise BaseError(f"layer {index + 1} of {ref} is not the one its image "
                                    f"config names (diff_id {diff_ids[index][:19]}…, the "
                                    f"layer unpacks to {actual[:19]}…).",
                                    "The registry serves an inconsistent image: pull again "
                                    "later, or tell the image's publisher.")
            os.chmod(tmp / "rootfs", 0o755)
            size = sum(int(layer.get("size", 0)) for layer in layers)
            (tmp / "image.json").write_text(json.dumps({
                "reference": str(ref), "digest": digest,
                "layers": [layer["digest"] for layer in layers],
                "size": size, "pulled": time.time(), "architecture": config.get("architecture"),
                "os": config.get("os"), "env": config.get("config", {}).get("Env", []),
                "skipped": skipped[:50]}, indent=1))
            if target.exists():
                remove_tree(tmp)  # another pull finished first
                return
            os.rename(tmp, target)
        except BaseException:
            remove_tree(tmp)
            raise

    # -- disk -------------------------------------------------------------------------
    def remove(self, text: str) -> list[str]:
        ref = parse_reference(text)
        refs = self.refs()
        digest = refs.pop(str(ref), None) or ref.digest
        if digest is None or not self.image_dir(digest).exists():
            raise BaseError(f"no pulled image {text}.", "`coop image ls` lists them.")
        self._save_refs(refs)
        remove_tree(self.image_dir(digest))
        return [str(ref)]

    def prune(self) -> int:
        """Remove unfinished pulls and blobs no image uses; returns bytes freed."""
        freed = 0
        for tmp in self.images.glob(".tmp-*"):
            freed += _size(tmp)
            remove_tree(tmp)
        used = {d for info in self.images_info() for d in info["layers"]}
        for blob in self.blobs.glob("*"):
            if "sha256:" + blob.name not in used:
                freed += blob.stat().st_size
                blob.unlink()
        return freed


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class _Hashing:
    """A stream that hashes what is read from it (a layer's diff_id, while unpacking)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha.update(data)
        return data

    def finish(self) -> str:
        """The digest of the whole stream (tar stops reading at its end-of-archive
        blocks; the padding after them counts too)."""
        while self.read(1 << 20):
            pass
        return "sha256:" + self.sha.hexdigest()


class _decompressed:
    """A layer blob as a plain tar stream: gzip, zstd or uncompressed, by magic bytes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.stream: Any = None

    def __enter__(self) -> IO[bytes]:
        magic = self.raw.read(4)
        self.raw.seek(0)
        if magic.startswith(GZIP_MAGIC):
            import gzip

            self.stream = gzip.GzipFile(fileobj=self.raw)
        elif magic == ZSTD_MAGIC:
            import zstandard

            self.stream = zstandard.ZstdDecompressor().stream_reader(self.raw)
        else:
            self.stream = self.raw
        stream: IO[bytes] = self.stream
        return stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None and self.stream is not self.raw:
            self.stream.close()


class _progress:
    """Rich progress bars (bytes and speed per layer) on a terminal; one line per layer
    otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _progress:
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), transient=False)
            self.bars.start()
        return self

    def callback(self, layer: dict[str, Any]) -> Any:
        digest = str(layer["digest"])
        name = digest.removeprefix("sha256:")[:12]
        if self.bars is not None:
            self.tasks[digest] = self.bars.add_task(name, total=int(layer.get("size", 0)))

        def update(_digest: str, done: int, total: int) -> None:
            if self.bars is not None:
                self.bars.update(self.tasks[digest], completed=done)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()
        elif not self.quiet:
            print(f"coop: pulled {len(self.tasks) or 'all'} layer(s)", file=sys.stderr)


def disk_usage(path: Path) -> int:
    return _size(path) if path.exists() else 0

