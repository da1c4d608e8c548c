"""`coop init`: write a commented Coopfile for the chosen agent."""

from __future__ import annotations

from pathlib import Path

from coop.config.coopfile import COOPFILE_NAMES, find_coopfile
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


def render(agent: str, image: str) -> str:
    """The Coopfile text for an agent and image (valid YAML, every line explained)."""
    command, args, env, mounts = AGENTS[agent]
    lines = [
        "# Coopfile: how coop sandboxes this project. Reference: coop's docs/coopfile.md",
        "# Validate it with `coop run -- true`.",
        "",
        f"image: {image}    # host (this machine's own system), dir:PATH, tar:PATH, or node:22",
        "",
        "# Installed once when the base is built (apt, apk, dnf, pacman, pip, npm):",
        "# packages:",
        "#   apt: [git, ripgrep]",
        "# setup:",
        "#   - git config --system init.defaultBranch main",
        "",
        "agent:",
        f"  command: {command}",
    ]
    if args:
        lines.append(f"  args: [{', '.join(args)}]")
    lines += [
        "  restart: on-failure    # always | on-failure | never",
        "",
        "shell: /bin/bash         # what `coop shell` opens",
        "",
        "workspace:",
        "  path: /workspace       # where this directory appears inside (read-write)",
        "",
        "env:                     # $VAR expands from your environment when a session starts",
        "  TERM: xterm-256color",
    ]
    lines += [f"  {line}" for line in env]
    gitconfig = "~/.gitconfig:~/.gitconfig:ro"
    has_gitconfig = Path("~/.gitconfig").expanduser().is_file()
    lines += ["", "mounts:                  # src:dst[:ro]; a bare name is a volume kept by coop",
              f"  - {gitconfig}" if has_gitconfig else f"  # - {gitconfig}"]
    lines += [f"  - {line}" for line in mounts]
    if not has_gitconfig and not mounts:
        lines[-2] = "# mounts:                # src:dst[:ro]; a bare name is a volume kept by coop"
    lines += [
        "",
        "network:",
        "  mode: proxy            # proxy (allow list) | none (loopback only) | host",
        "  # allow: [api.example.com, \"*.example.org\"]   # added to the built-in list of",
        "  #                      # agents' APIs and package registries",
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
    from coop.config.schema import ImageRef

    if not ImageRef().valid(image):
        raise CoopError(f"--image {image!r} is not a valid image.",
                        "Use host, dir:PATH, tar:PATH, or a reference such as node:22-bookworm.")
    target.write_text(render(agent, image))
    if not quiet:
        print(f"Wrote {target}. Start with: coop run -- {AGENTS[agent][0]}")
    return 0
