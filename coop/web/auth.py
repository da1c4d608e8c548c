"""Who may talk to `coop serve`: a token, checked in constant time, and nothing else.

The token arrives once in `?token=` (the URL or QR code), is turned into a cookie
(HttpOnly, SameSite=Strict) and removed from the address bar by a redirect; scripts may
send `Authorization: Bearer`. Failures get a bare 403 and are counted per client address:
past `FAILURE_LIMIT` in `FAILURE_WINDOW` seconds that address's bad attempts are answered
429 at once, so guessing is slow and costs the server nothing, while a request with the
right token always passes. Every request's Host must be an address or
a name of this machine (a page on any site can aim a request at 127.0.0.1 — DNS
rebinding), and a WebSocket's Origin must be the page's own.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import time
from collections import deque
from urllib.parse import urlsplit

COOKIE = "coop_token"
FAILURE_LIMIT = 20
FAILURE_WINDOW = 10.0


class Auth:
    def __init__(self, token: str, read_only_token: str | None = None) -> None:
        self.token = token
        self.read_only_token = read_only_token
        self.failures: dict[str, deque[float]] = {}
        self.names = {"localhost", socket.gethostname().lower(),
                      socket.gethostname().lower() + ".local"}

    def access(self, presented: str | None) -> str | None:
        """"full", "read" or None for a presented token."""
        if not presented:
            return None
        if hmac.compare_digest(presented.encode(), self.token.encode()):
            return "full"
        if self.read_only_token and hmac.compare_digest(presented.encode(),
                                                        self.read_only_token.encode()):
            return "read"
        return None

    def throttled(self, address: str) -> bool:
        window = self.failures.get(address)
        if not window:
            return False
        cutoff = time.monotonic() - FAILURE_WINDOW
        while window and window[0] < cutoff:
            window.popleft()
        return len(window) >= FAILURE_LIMIT

    def failed(self, address: str) -> None:
        self.failures.setdefault(address, deque(maxlen=FAILURE_LIMIT)).append(time.monotonic())
        if len(self.failures) > 10000:  # forget the oldest addresses, memory stays bounded
            for key in list(self.failures)[:5000]:
                del self.failures[key]

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        name = urlsplit(f"//{host}").hostname or ""
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name.lower() in self.names

    @staticmethod
    def origin_allowed(origin: str | None, host: str | None) -> bool:
        if not origin or not host:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host
