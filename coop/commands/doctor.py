"""`coop doctor`: print each check with ✓/✗ and the fix for each failure."""

from __future__ import annotations

import json
import sys

from coop.sandbox.doctor import run_checks


def doctor(as_json: bool = False) -> int:
    from coop.web.server import page_check

    checks = [*run_checks(), page_check()]
    failed = any(not c.ok and c.required for c in checks)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2))
        return 1 if failed else 0
    from rich.console import Console

    # Piped (a bug report, a CI log), rich would hard-wrap at 80 columns mid-phrase: one
    # check stays one line; on a terminal it wraps at word boundaries to fit.
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    for check in checks:
        mark = "[green]✓[/]" if check.ok else ("[red]✗[/]" if check.required else "[yellow]![/]")
        console.print(f"{mark} [bold]{check.name}[/]: {check.detail}")
        if not check.ok and check.fix:
            console.print(f"    fix: {check.fix}", soft_wrap=True)
    if failed:
        print("\ncoop cannot sandbox on this machine until the failures above are fixed.",
              file=sys.stderr)
    else:
        console.print("\nThis machine can run coop sandboxes.")
    return 1 if failed else 0
