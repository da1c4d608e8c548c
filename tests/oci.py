"""Test images: built from busybox-static, pushed to a real registry over its HTTP API.

`Registry` runs an OCI registry server (Debian's `docker-registry`) on a free loopback
port. `Front` sits before it to play the parts a plain registry does not: Docker Hub's
anonymous token flow, counting blob downloads, and corrupting a blob in transit.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import subprocess
import tarfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, registry_server, static_busybox

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Registry:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        config = root / "config.yml"
        config.write_text(f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {root / 'data'}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{self.port}
log:
  level: error
""")
        self.proc = subprocess.Popen([registry_server(), "serve", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=30)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def layer(files: dict[str, bytes | str | None], compress: str = "gzip") -> bytes:
    """A layer tar: bytes → file, str → symlink target, None → directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    raw = buffer.getvalue()
    if compress == "gzip":
        return gzip.compress(raw, mtime=0)
    if compress == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


def busybox_layer() -> dict[str, bytes | str | None]:
    files: dict[str, bytes | str | None] = {"bin": None,
                                            "bin/busybox": static_busybox().read_bytes()}
    for applet in ("sh", "ls", "cat", "echo", "id", "test", "true", "hostname", "env"):
        files[f"bin/{applet}"] = "busybox"
    files.update({"etc": None, "tmp": None, "root": None})
    return files


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pushed:
    manifest_digest: str
    layer_digests: list[str] = field(default_factory=list)


def push_blob(registry: str, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    start = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start) as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    separator = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{separator}digest={digest}", data=data,
                                 method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(put).close()
    return digest


def push_manifest(registry: str, repo: str, tag: str, body: dict[str, object],
                  media_type: str) -> str:
    data = json.dumps(body).encode()
    request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", data=data,
                                     method="PUT", headers={"Content-Type": media_type})
    urllib.request.urlopen(request).close()
    return digest_of(data)


def diff_id(data: bytes) -> str:
    """A layer's uncompressed digest, as an image config lists it."""
    if data.startswith(b"\x1f\x8b"):
        return digest_of(gzip.decompress(data))
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard

        return digest_of(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    return digest_of(data)


def push_image(registry: str, repo: str, tag: str, layers: list[bytes],
               architecture: str = "amd64", diff_ids: list[str] | None = None) -> Pushed:
    digests = [push_blob(registry, repo, data) for data in layers]
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "config": {"Env": ["PATH=/bin", "IMAGE_NAME=busybox-test",
                                            "SHADOWED=by the image"]},
                         "rootfs": {"type": "layers",
                                    "diff_ids": diff_ids or [diff_id(d) for d in layers]},
                         }).encode()
    config_digest = push_blob(registry, repo, config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": d, "size": len(data)}
                           for d, data in zip(digests, layers, strict=True)]}
    return Pushed(push_manifest(registry, repo, tag, manifest, OCI_MANIFEST), digests)


def push_index(registry: str, repo: str, tag: str,
               entries: list[tuple[str, str, int]]) -> str:
    """entries: (manifest digest, architecture, size)."""
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                            "platform": {"os": "linux", "architecture": arch}}
                           for d, arch, size in entries]}
    return push_manifest(registry, repo, tag, index, OCI_INDEX)


class Front:
    """A proxy before the registry: bearer tokens, blob counting, corruption."""

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self.blob_gets: list[str] = []
        self.corrupt: set[str] = set()
        self.token_requests = 0
        self.delay = 0.0
        self.login: str | None = None
        """When set ("user:password"), tokens only for those Basic credentials."""
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    front.token_requests += 1
                    expected = "Basic " + base64.b64encode((front.login or "").encode()).decode()
                    if front.login and self.headers.get("Authorization") != expected:
                        self._send(401, b"{}", {})
                        return
                    body = json.dumps({"token": "good-token"}).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                if self.headers.get("Authorization") != "Bearer good-token":
                    realm = f"http://127.0.0.1:{front.port}/token"
                    self._send(401, b"{}", {"WWW-Authenticate":
                                            f'Bearer realm="{realm}",service="test",'
                                            'scope="repository:x:pull"'})
                    return
                request = urllib.request.Request(f"http://{front.registry}{self.path}",
                                                 headers={"Accept": self.headers.get("Accept",
                                                                                     "*/*")})
                try:
                    with urllib.request.urlopen(request) as upstream:
                        body = upstream.read()
                        headers = {"Content-Type": upstream.headers.get("Content-Type", "")}
                        status = upstream.status
                except urllib.error.HTTPError as exc:
                    body, headers, status = exc.read(), {}, exc.code
                if "/blobs/" in self.path:
                    digest = self.path.rsplit("/", 1)[1]
                    front.blob_gets.append(digest)
                    if front.delay:
                        self._send_slowly(status, body, headers)
                        return
                    if digest in front.corrupt and body:
                        body = body[:-1] + bytes([body[-1] ^ 0xFF])
                self._send(status, body, headers)

            def _send_slowly(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                """Half the body, a pause (a pull can be killed meanwhile), the rest."""
                half = len(body) // 2
                self._send(status, body[:half], headers, length=len(body))
                self.wfile.flush()
                time.sleep(front.delay)
                self.wfile.write(body[half:])

            def _send(self, status: int, body: bytes, headers: dict[str, str],
                      length: int | None = None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients killed on purpose
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()

