"""Process limits for coop's own long-running processes."""

from __future__ import annotations

import resource


def raise_nofile() -> None:
    """Use the hard limit on open files: a proxy or a busy supervisor holds many sockets,
    and the usual soft limit (1024) is an accident of history, not a budget."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
