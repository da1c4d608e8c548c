"""Credentials for private registries, from where a Docker user already keeps them.

In order: the global config's `registries: {HOST: {username: U, password_env: VAR}}` (the
password itself stays in the environment, never in a file coop writes), then Docker's own
`config.json` (`$DOCKER_CONFIG` or `~/.docker`) `auths` entries, as `docker login` writes
them. Credential helpers (`credsStore`, `credHelpers`) would mean running another program
and are not used: the error then says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from coop.images.reference import DOCKER_HUB, Reference

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")


def docker_config() -> dict[str, Any]:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        data = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def credentials(ref: Reference, settings: dict[str, Any]) -> tuple[str, str] | None:
    """(username, password) for the registry of `ref`, or None for anonymous."""
    username = settings.get("username")
    if username:
        variable = str(settings.get("password_env") or "")
        return str(username), os.environ.get(variable, "") if variable else ""
    auths = docker_config().get("auths") or {}
    keys = DOCKER_HUB_KEYS if ref.registry == DOCKER_HUB else (
        ref.registry, f"https://{ref.registry}", f"http://{ref.registry}")
    for key in keys:
        entry = auths.get(key) or auths.get(key.rstrip("/"))
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                continue
            return user, password
    return None


def helper_in_use() -> bool:
    """Docker keeps its credentials in a helper program (which coop does not run)."""
    config = docker_config()
    return bool(config.get("credsStore") or config.get("credHelpers"))
