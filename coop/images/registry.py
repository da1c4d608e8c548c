"""A client of the OCI distribution API on aiohttp: manifests, indexes, blobs, tokens.

Anonymous bearer tokens the way Docker Hub hands them out (a 401 with `WWW-Authenticate:
Bearer realm=…,service=…,scope=…` → fetch a token → retry), image indexes and Docker
manifest lists (the host's platform is picked; none is a clear error), OCI and Docker v2
manifests. Every blob is verified against its digest while it streams to disk and only
then renamed into the shared cache, so a killed or corrupted download leaves nothing a
later pull would trust. `registries:` in the global config gives a host a mirror or
`insecure: true` (plain HTTP).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from coop.errors import BaseError
from coop.images.credentials import credentials, helper_in_use
from coop.images.reference import DOCKER_HUB, Reference

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", ARCH.get(machine, machine)


@dataclass
class Manifest:
    digest: str
    media_type: str
    config: dict[str, Any]
    """The manifest's config descriptor (digest, size)."""
    layers: list[dict[str, Any]]
    raw: bytes


Progress = Callable[[str, int, int], None]
"""(layer digest, bytes so far, total) — called as a blob downloads."""


def _login_hint(ref: Reference) -> str:
    host = "docker.io" if ref.config_key == "docker.io" else ref.registry
    hint = (f"`docker login {host}` (coop reads ~/.docker/config.json), or set "
            f"`registries: {{{ref.config_key}: {{username: NAME, password_env: VAR}}}}` in the "
            "global config with the password in $VAR.")
    if helper_in_use():
        hint += (" Your Docker config keeps passwords in a credential helper, which coop "
                 "does not run.")
    return hint


class RegistryClient:
    def __init__(self, registries: dict[str, dict[str, Any]] | None = None) -> None:
        self.registries = registries or {}
        self.session: aiohttp.ClientSession | None = None
        self.authorization: dict[tuple[str, str], str] = {}
        """(registry, scope) → the Authorization header that worked (Bearer or Basic)."""

    async def __aenter__(self) -> RegistryClient:
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60)
        self.session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    def base_url(self, ref: Reference) -> str:
        settings = self.registries.get(ref.config_key, {})
        mirror = settings.get("mirror")
        if mirror:
            return str(mirror).rstrip("/")
        scheme = "http" if settings.get("insecure") else "https"
        return f"{scheme}://{ref.registry}"

    async def _get(self, ref: Reference, path: str, accept: str | None = None
                   ) -> aiohttp.ClientResponse:
        assert self.session is not None
        url = f"{self.base_url(ref)}/v2/{ref.repository}/{path}"
        scope = f"repository:{ref.repository}:pull"
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            authorization = self.authorization.get((ref.registry, scope))
            if authorization:
                headers["Authorization"] = authorization
            try:
                response = await self.session.get(url, headers=headers)
            except (aiohttp.ClientError, OSError) as exc:
                raise BaseError(f"cannot reach the registry {ref.registry}: {exc}.",
                                "Check the name, your network, or `registries:` in the "
                                "global config (mirror, insecure).") from None
            if response.status == 401 and attempt == 0:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                await self._fetch_token(ref, challenge, scope)
                continue
            return response
        return response

    async def _fetch_token(self, ref: Reference, challenge: str, scope: str) -> None:
        """Answer a 401: a bearer token from the realm (anonymous, or with the user's
        credentials as Basic auth, as `docker login` users expect), or Basic auth itself."""
        assert self.session is not None
        creds = credentials(ref, self.registries.get(ref.config_key, {}))
        basic = aiohttp.BasicAuth(*creds) if creds else None
        if challenge.lower().startswith("basic") and basic is not None:
            self.authorization[(ref.registry, scope)] = basic.encode()
            return
        if not challenge.lower().startswith("bearer "):
            shown = challenge or "no challenge"
            raise BaseError(f"the registry {ref.registry} wants credentials ({shown}).",
                            _login_hint(ref))
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise BaseError(f"the registry {ref.registry} sent a token challenge without a realm.")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        if creds:
            query["account"] = creds[0]
        try:
            async with self.session.get(realm, params=query, auth=basic) as response:
                if response.status != 200:
                    who = f"the credentials of {creds[0]}" if creds else "an anonymous token"
                    raise BaseError(f"the token server of {ref.registry} refused {who} "
                                    f"({response.status}); the image may be private.",
                                    _login_hint(ref))
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise BaseError(f"cannot get a token for {ref.registry}: {exc}.") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BaseError(f"the token server of {ref.registry} sent no token.")
        self.authorization[(ref.registry, scope)] = f"Bearer {token}"

    async def manifest(self, ref: Reference, want: tuple[str, str] | None = None) -> Manifest:
        """The image manifest for the host's platform (resolving an index if needed)."""
        os_name, arch = want or host_platform()
        media_type, raw, digest = await self._fetch_manifest(ref, ref.reference)
        if media_type in INDEX_TYPES or b'"manifests"' in raw[:4096]:
            index = json.loads(raw)
            candidates = [m for m in index.get("manifests", [])
                          if m.get("platform", {}).get("os") == os_name
                          and m.get("platform", {}).get("architecture") == arch]
            if not candidates:
                found = sorted({f"{m.get('platform', {}).get('os')}/"
                                f"{m.get('platform', {}).get('architecture')}"
                                for m in index.get("manifests", [])})
                raise BaseError(f"image {ref} has no {os_name}/{arch} variant (it has: "
                                f"{', '.join(found) or 'none'}).",
                                "Pick an image built for this machine.")
            media_type, raw, digest = await self._fetch_manifest(ref, candidates[0]["digest"])
        body = json.loads(raw)
        if "layers" not in body or "config" not in body:
            raise BaseError(f"image {ref}: unsupported manifest type {media_type!r} (schema "
                            f"{body.get('schemaVersion')}).")
        return Manifest(digest, media_type, body["config"], body["layers"], raw)

    async def _fetch_manifest(self, ref: Reference, reference: str) -> tuple[str, bytes, str]:
        response = await self._get(ref, f"manifests/{reference}", ACCEPT)
        async with response:
            if response.status == 404:
                what = f"digest {reference}" if reference.startswith("sha256:") else \
                    f"tag {reference}"
                raise BaseError(f"image {ref}: the registry has no {what}.",
                                "Check the tag (e.g. on the registry's web page).")
            if response.status != 200:
                raise BaseError(f"image {ref}: the registry answered {response.status} "
                                f"for the manifest.")
            raw = await response.read()
            media_type = response.headers.get("Content-Type", "").split(";")[0]
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise BaseError(f"image {ref}: the manifest does not match its digest {reference}.")
        return media_type, raw, digest

    async def blob(self, ref: Reference, digest: str, dest: Path,
                   progress: Progress | None = None) -> None:
        """Download a blob to `dest`, verified; nothing is left at `dest` unless it is."""
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest)
        partial = dest.with_name(dest.name + f".{os.getpid()}.part")
        response = await self._get(ref, f"blobs/{digest}")
        hasher = hashlib.sha256()
        done = 0
        try:
            async with response:
                if response.status != 200:
                    raise BaseError(f"image {ref}: the registry answered {response.status} for "
                                    f"layer {digest[:19]}.")
                total = int(response.headers.get("Content-Length", "0") or 0)
                with open(partial, "wb") as out:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(digest, done, total)
            if "sha256:" + hasher.hexdigest() != digest:
                raise BaseError(f"image {ref}: layer {digest[:19]} does not match its digest "
                                "(corrupted in transit or by the registry); nothing was cached.")
            os.replace(partial, dest)
        finally:
            if partial.exists():
                partial.unlink()

    async def config(self, ref: Reference, manifest: Manifest) -> dict[str, Any]:
        response = await self._get(ref, f"blobs/{manifest.config['digest']}")
        async with response:
            raw = await response.read()
        if "sha256:" + hashlib.sha256(raw).hexdigest() != manifest.config["digest"]:
            raise BaseError(f"image {ref}: its config does not match its digest.")
        result: dict[str, Any] = json.loads(raw)
        return result


def _remove_stale_parts(dest: Path) -> None:
    """Partial downloads of this blob left by pulls that were killed: start over cleanly."""
    for part in dest.parent.glob(dest.name + ".*.part"):
        try:
            pid = int(part.name.split(".")[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue


__all__ = ["DOCKER_HUB", "Manifest", "RegistryClient", "host_platform"]
