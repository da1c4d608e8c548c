"""coop: run AI coding agents in a rootless Linux sandbox, reachable from anywhere."""

__version__ = "0.1.0"
