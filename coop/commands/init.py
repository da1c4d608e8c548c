"""`coop init`: write a commented Coopfile for the chosen agent."""

from __future__ import annotations

import re
from pathlib import Path

from coop.config.coopfile import COOPFILE_NAMES, find_coopfile
from coop.config.schema import PACKAGE_MANAGERS, ImageRef
from coop.errors import CoopError

AGENTS: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    # agent: (command, args, env lines, mounts)
    "claude": ("claude", ["--dangerously-skip-permissions"],
               ["ANTHROPIC_API_KEY: $ANTHROPIC_API_KEY"],
               ["claude-config:~/.claude          # named volume: login and settings persist"]),
    "codex": ("codex", [], ["OPENAI_API_KEY: $OPENAI_API_KEY"],
              ["codex-config:~/.codex"]),
    "aider": ("aider", [], ["ANTHROPIC_API_KEY: $ANTHROPIC_API_KEY",
                            "OPENAI_API_KEY: $OPENAI_API_KEY"], []),
    "shell": ("/bin/bash", [], [], []),
}


PACKAGE_EXAMPLE = "[git, ripgrep]"
SETUP_EXAMPLE = "echo 'export EDITOR=vi' >> /etc/profile"
"""Runs on any image with a shell, so uncommenting `setup` alone works."""


def _manager_for(image: str) -> str:
    """The package manager of the image's distribution, so the example installs as written."""
    words = set(re.split(r"[/:@._-]", image.lower()))
    for manager, distros in (("apk", {"alpine"}), ("pacman", {"archlinux", "arch"}),
                             ("dnf", {"fedora", "centos", "rockylinux", "almalinux", "ubi8",
                                      "ubi9"})):
        if words & distros:
            return manager
    return "apt"  # Debian and what builds on it: node, python, golang, rust, ubuntu


def _base_lines(image: str) -> list[str]:
    """`image:` with `packages`/`setup` commented where they are valid: on `host` they need
    an image first, so they sit under a commented `image:` line that replaces it."""
    manager = _manager_for("debian" if image == "host" else image)
    others = ", ".join(m for m in PACKAGE_MANAGERS if m != manager)
    build = [
        "# packages:               # installed once when the base is built",
        f"#   {manager}: {PACKAGE_EXAMPLE}   # or {others}",
        "# setup:                  # shell commands run once as root, after the packages",
        f"#   - {SETUP_EXAMPLE}",
    ]
    if image == "host":
        return [
            "image: host               # this machine's own system, used as it is",
            "",
            "# To install packages or run setup commands, build on an image instead: put",
            "# this line in place of `image: host`, then uncomment what you need below it.",
            "# image: debian:bookworm  # any OCI image (node:22, python:3.12), dir:PATH, tar:PATH",
            *build,
        ]
    return [
        f"image: {image}    # an OCI image, dir:PATH, tar:PATH, or host (no packages/setup)",
        "",
        *build,
    ]


def _mount_lines(mounts: list[str]) -> list[str]:
    """The user's ~/.gitconfig when there is one; the agent's volumes. With neither, the
    whole key is commented, so uncommenting it gives a list, never a bare `mounts:`."""
    header = "mounts:                  # src:dst[:ro]; a bare name is a volume kept by coop"
    gitconfig = "~/.gitconfig:~/.gitconfig:ro"
    items = [f"  - {line}" for line in mounts]
    if Path("~/.gitconfig").expanduser().is_file():
        return [header, f"  - {gitconfig}", *items]
    later = f"- {gitconfig}    # once you have a ~/.gitconfig"
    if not items:
        return [f"# {header}", f"#   {later}"]
    return [header, f"  # {later}", *items]


def render(agent: str, image: str) -> str:
    """The Coopfile text for an agent and image: valid YAML, every line explained, and valid
    again after uncommenting any commented option (as the comments describe)."""
    command, args, env, mounts = AGENTS[agent]
    shell = "/bin/sh" if _manager_for(image) == "apk" else "/bin/bash"  # Alpine has no bash
    if agent == "shell":
        command = shell
    lines = [
        "# Coopfile: how coop sandboxes this project. Reference: coop's docs/coopfile.md",
        "# Validate it with `coop run -- true`.",
        "",
        *_base_lines(image),
        "",
        "agent:",
        f"  command: {command}",
    ]
    if args:
        lines.append(f"  args: [{', '.join(args)}]")
    lines += [
        "  restart: on-failure    # always | on-failure | never",
        "",
        f"shell: {shell:<18}# what `coop shell` opens",
        "",
        "workspace:",
        "  path: /workspace       # where this directory appears inside (read-write)",
        "",
        "env:                     # $VAR expands from your environment when a session starts",
        "  TERM: xterm-256color",
    ]
    lines += [f"  {line}" for line in env]
    lines += ["", *_mount_lines(mounts)]
    lines += [
        "",
        "network:",
        "  mode: proxy            # proxy (allow list) | none (loopback only) | host",
        "  # allow: [api.example.com, \"*.example.org\"]   # added to the built-in allow list",
        "# ports: [3000]          # open a dev server of the sandbox on the host's localhost",
        "",
        "limits: {pids: 4096, nofile: 4096}",
        "",
    ]
    return "\n".join(lines)


def init(workspace: Path, agent: str, image: str, force: bool, quiet: bool = False) -> int:
    if not workspace.is_dir():
        raise CoopError(f"{workspace} is not a directory.")
    existing = find_coopfile(workspace)
    if existing is not None and not force:
        raise CoopError(f"{existing} already exists; not replacing it.",
                        "Pass --force to overwrite it, or edit it by hand.")
    target = existing if existing is not None and existing.suffix != ".toml" else \
        workspace / COOPFILE_NAMES[0]
    if not ImageRef().valid(image):
        raise CoopError(f"--image {image!r} is not a valid image.",
                        "Use host, dir:PATH, tar:PATH, or a reference such as node:22-bookworm.")
    target.write_text(render(agent, image))
    if not quiet:
        print(f"Wrote {target}. Start with: coop run -- {AGENTS[agent][0]}")
    return 0
