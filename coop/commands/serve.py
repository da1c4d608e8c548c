"""`coop serve`: ask the daemon to start (or stop) the web server, print how to reach it.

The QR code holds the network URL with its token (the one a phone on the same LAN can
open), so it is printed only to this terminal, never logged. segno draws it: a QR
encoder (Reed–Solomon, masks, versions) is a library's job, not ours.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from coop.ipc.client import call
from coop.paths import coop_paths


def serve(host: str, port: int, token: str | None, read_only: bool, tls: bool, stop: bool,
          qr: bool | None, as_json: bool) -> int:
    reply = call(coop_paths(), {"cmd": "serve", "host": host, "port": port, "token": token,
                                "read_only": read_only, "tls": tls, "stop": stop})
    if stop:
        if as_json:
            print(json.dumps({"running": False, "stopped": reply.get("stopped", False)}))
        else:
            print("the web server stopped" if reply.get("stopped") else
                  "the web server was not running")
        return 0
    if as_json:
        print(json.dumps({k: v for k, v in reply.items() if k != "ok"}, indent=2))
        return 0
    if reply.get("already"):
        print(f"already serving on {reply['host']}:{reply['port']} "
              "(`coop serve --stop` first to change it)")
    print(f"local:    {reply['url']}")
    for url in reply.get("network_urls", []):
        print(f"network:  {url}")
    if reply.get("read_only_url"):
        print(f"viewer:   {reply['read_only_url']}  (read-only)")
    if reply.get("fingerprint"):
        print(f"TLS certificate SHA-256: {reply['fingerprint']}\n"
              "  (self-signed: check that your browser shows this fingerprint)")
    target = (reply.get("network_urls") or [reply["url"]])[0]
    if sys.stdout.isatty() if qr is None else qr:
        print(qr_text(target))
    elif not reply.get("network_urls"):
        print("Only this machine can reach it; `coop serve --stop`, then "
              "`coop serve --host 0.0.0.0` for your phone on the LAN.")
    if reply.get("network_urls") and not reply.get("fingerprint"):
        print("Tip: with --tls, phones also get notifications and the clipboard (browsers "
              "allow them only on https).")
    print("Anyone with the link can type into your sessions; keep it private.")
    return 0


def qr_text(url: str) -> str:
    """The URL as a QR code drawn with half blocks (two modules per character row)."""
    import segno

    out = io.StringIO()
    segno.make(url, error="l", micro=False).terminal(out=out, compact=True)
    return out.getvalue()


def summary_line(web: dict[str, Any] | None) -> str | None:
    """`coop ls` / `coop status`: the web server's address and its clients."""
    if not web:
        return None
    return (f"web: serving on {web['address']} · {web['terminals']} browser terminal(s), "
            f"{web['watchers']} page(s) open")
