"""`coop serve`: ask the daemon to start (or stop) the web server, print how to reach it.

The QR code holds the network URL with its token (the one a phone on the same LAN can
open), so it is printed only to this terminal, never logged; on loopback there is no such
URL (a phone cannot open 127.0.0.1), so instead of a QR code it says how to get one. segno
draws it: a QR encoder (Reed–Solomon, masks, versions) is a library's job, not ours.
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from coop.errors import CoopError
from coop.ipc.client import RequestError, call
from coop.paths import coop_paths

PHONE_HINT = ("Only this machine can reach it. To open it on your phone: `coop serve --stop`, "
              "then `coop serve --host 0.0.0.0 --tls` (and scan its QR code).")


def serve(host: str, port: int, token: str | None, read_only: bool, tls: bool, stop: bool,
          qr: bool | None, as_json: bool) -> int:
    try:
        reply = call(coop_paths(), {"cmd": "serve", "host": host, "port": port, "token": token,
                                    "read_only": read_only, "tls": tls, "stop": stop})
    except RequestError as exc:
        if exc.code != "PORT_IN_USE":
            raise
        raise CoopError(f"port {port} is in use (another program listens on it).",
                        f"Pick another one: `coop serve --port {free_port(host, port)}`") \
            from None
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
    target = phone_url(reply)
    if target is None:
        print(PHONE_HINT if reply["host"] not in ("0.0.0.0", "::") else
              "No LAN address found: a phone cannot reach this machine (is it on a network?).")
    elif sys.stdout.isatty() if qr is None else qr:
        print(qr_text(target))
    if reply.get("network_urls") and not reply.get("fingerprint"):
        print("Tip: with --tls, phones also get notifications and the clipboard (browsers "
              "allow them only on https).")
    print("Anyone with the link can type into your sessions; keep it private.")
    return 0


def phone_url(reply: dict[str, Any]) -> str | None:
    """The first URL a phone can open: a LAN address, or the address served on when it
    is not loopback; None when only this machine can reach the server."""
    for url in [*reply.get("network_urls", []), reply["url"]]:
        host = urlsplit(url).hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a host name: whoever resolves it may reach it
        if not loopback:
            return str(url)
    return None


def free_port(host: str, taken: int) -> int:
    """A port after `taken` that nothing listens on at `host` (for the suggestion)."""
    for port in range(taken + 1, min(taken + 100, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
                return port
            except OSError:
                continue
    return taken + 1


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
