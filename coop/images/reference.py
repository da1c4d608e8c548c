"""Image references as Docker users write them, resolved to registry, repository, tag.

`node:22` is `registry-1.docker.io/library/node:22`; `ghcr.io/o/i` is `ghcr.io/o/i:latest`;
`127.0.0.1:5000/x@sha256:…` pins a digest. The first path component is a registry when it
has a dot or a port or is `localhost` (Docker's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from coop.errors import BaseError

DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str = "latest"
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the manifest endpoint for."""
        return self.digest or self.tag

    def __str__(self) -> str:
        shown = f"{self.registry}/{self.repository}"
        return shown + (f"@{self.digest}" if self.digest else f":{self.tag}")

    @property
    def config_key(self) -> str:
        """The key of `registries:` in the global config ("docker.io" for Docker Hub)."""
        return "docker.io" if self.registry == DOCKER_HUB else self.registry


def parse_reference(text: str) -> Reference:
    rest = text.strip()
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise BaseError(f"image {text}: the digest must be sha256:<64 hex digits>.")
    tag = "latest"
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], "/".join(parts[1:])
    else:
        registry, path = DOCKER_HUB, rest
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path:
        raise BaseError(f"image {text}: no repository name.")
    return Reference(registry, path, tag, digest)
