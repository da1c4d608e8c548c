"""`python -m bench [NAME…]`: run benchmarks by name (all when none is given)."""

from __future__ import annotations

import sys

from bench import images, proxy, sandbox_start, sessions, tui, web

BENCHMARKS = {"sandbox": sandbox_start.main, "sessions": sessions.main, "proxy": proxy.main,
              "images": images.main, "tui": tui.main, "web": web.main}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        BENCHMARKS[name]()
    return 0


raise SystemExit(main(sys.argv[1:]))
