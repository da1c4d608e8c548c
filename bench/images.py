"""Images: pulling from a loopback registry, unpacking, and a cached rebuild.

- pull: `ImageStore.pull` of a 3-layer image (120 MB of incompressible files, gzip) from
  Debian's docker-registry on loopback, download alone and download + unpack, against
  `curl` fetching the same blobs (3 in parallel): the physical limit here;
- unpack: one 40 MB layer, coop's safe unpacker against `tar -xzf`;
- rebuild: `coop build` of an unchanged Coopfile with three setup steps, whole process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    from coop.images.reference import parse_reference
    from coop.images.registry import RegistryClient
    from coop.images.store import ImageStore
    from coop.paths import coop_paths
    from tests.oci import Registry, busybox_layer, layer, push_image

    if not shutil.which("docker-registry"):
        print("images: needs docker-registry (apt-get install docker-registry)")
        return
    work = Path(tempfile.mkdtemp(prefix="coop-bench-images-"))
    (work / "registry").mkdir()
    registry = Registry(work / "registry")
    try:
        layers = [layer(busybox_layer())] + [
            layer({f"data{i}/blob": os.urandom(40 << 20)}) for i in range(3)]
        pushed = push_image(registry.host, "bench/big", "1", layers)
        total = sum(len(data) for data in layers)
        print(f"images, {RUNS} runs each; image: {len(layers)} layers, {total / 1e6:.0f} MB")
        ref = parse_reference(f"{registry.host}/bench/big:1")
        registries = {registry.host: {"insecure": True}}

        downloads, pulls = [], []
        for run in range(RUNS):
            paths = coop_paths({"COOP_HOME": str(work / f"home{run}")})
            store = ImageStore(paths)

            async def download_only(store: ImageStore = store) -> None:
                async with RegistryClient(registries) as client:
                    manifest = await client.manifest(ref)
                    await asyncio.gather(*(client.blob(ref, d["digest"], store.blob(d["digest"]))
                                           for d in manifest.layers))

            start = time.perf_counter()
            asyncio.run(download_only())
            downloads.append(time.perf_counter() - start)
            shutil.rmtree(paths.data_dir)
            start = time.perf_counter()
            store.pull(ref, registries, quiet=True)
            pulls.append(time.perf_counter() - start)
            shutil.rmtree(work / f"home{run}")
        curls = []
        for _ in range(RUNS):
            urls = [f"http://{registry.host}/v2/bench/big/blobs/{d}"
                    for d in pushed.layer_digests]
            start = time.perf_counter()
            procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", url]) for url in urls]
            for proc in procs:
                proc.wait()
            curls.append(time.perf_counter() - start)
        for label, times in (("curl, the blobs (parallel)", curls),
                             ("coop: download + verify", downloads),
                             ("coop pull: download + verify + unpack", pulls)):
            print(f"  {label:40s} {_median(times) * 1000:7.0f} ms  "
                  f"{total / _median(times) / 1e6:6.0f} MB/s")

        blob = work / "layer.tar.gz"
        blob.write_bytes(layers[1])
        ours, tars = [], []
        import tarfile

        from coop.images.store import _decompressed, _Hashing
        from coop.sandbox.unpack import unpack_stream

        for run in range(RUNS):
            target = work / f"u{run}"
            target.mkdir()
            start = time.perf_counter()
            with open(blob, "rb") as raw, _decompressed(raw) as stream:
                hashing = _Hashing(stream)  # as a pull does: the diff_id is checked too
                with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                    unpack_stream(tar, target, whiteouts=True)
                hashing.finish()
            ours.append(time.perf_counter() - start)
            shutil.rmtree(target)
            target.mkdir()
            start = time.perf_counter()
            subprocess.run(["tar", "-xzf", str(blob), "-C", str(target)], check=True)
            tars.append(time.perf_counter() - start)
            shutil.rmtree(target)
        size = 40 << 20
        print(f"  {'unpack a 40 MB layer: coop':40s} {_median(ours) * 1000:7.0f} ms  "
              f"{size / _median(ours) / 1e6:6.0f} MB/s")
        print(f"  {'unpack a 40 MB layer: tar -xzf':40s} {_median(tars) * 1000:7.0f} ms  "
              f"{size / _median(tars) / 1e6:6.0f} MB/s")
        _rebuild(work)
    finally:
        registry.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _rebuild(work: Path) -> None:
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "echo"):
        (root / "bin" / applet).symlink_to("busybox")
    project = work / "project"
    project.mkdir()
    (project / "Coopfile").write_text(f"image: dir:{root}\nsetup:\n  - echo 1 > /etc/1\n"
                                      "  - echo 2 > /etc/2\n  - echo 3 > /etc/3\n")
    env = {**os.environ, "COOP_HOME": str(work / "coop"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "coop", "build"]
    subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    times = []
    for _ in range(max(RUNS, 10)):
        start = time.perf_counter()
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    print(f"  {'coop build, unchanged (3 cached steps)':40s} {_median(times):7.0f} ms  "
          f"(n={len(times)})")
