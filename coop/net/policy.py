"""Which hosts a sandbox may reach through coop's proxy.

A request is allowed when its host matches the allow list (exact names, `*.domain`
wildcards, IP addresses). The proxy resolves names itself and connects only to the
addresses it checked, so a name that resolves to a loopback, private, link-local,
metadata or otherwise non-global address is refused (DNS rebinding) unless that name or
that IP is listed explicitly — wildcards never open private addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# The common agents' APIs and package registries (issue 5); the Coopfile's
# `network.allow` is appended to these.
DEFAULT_ALLOW = (
    "api.anthropic.com", "*.anthropic.com", "claude.ai", "*.claude.ai",
    "api.openai.com", "*.openai.com", "chatgpt.com", "*.chatgpt.com",
    "generativelanguage.googleapis.com", "*.googleapis.com", "aiplatform.googleapis.com",
    "pypi.org", "files.pythonhosted.org",
    "registry.npmjs.org", "*.npmjs.org", "registry.yarnpkg.com",
    "crates.io", "index.crates.io", "static.crates.io",
    "proxy.golang.org", "sum.golang.org", "storage.googleapis.com",
    "github.com", "*.github.com", "*.githubusercontent.com", "codeload.github.com",
)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable, and not an IPv6 wrapping of something that is not."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class AllowList:
    def __init__(self, entries: list[str] | tuple[str, ...], defaults: bool = True) -> None:
        self.entries = tuple(dict.fromkeys([*(DEFAULT_ALLOW if defaults else ()), *entries]))
        self.exact = {e.lower().rstrip(".") for e in self.entries if not e.startswith("*.")
                      and parse_ip(e) is None}
        self.suffixes = tuple(e[1:].lower() for e in self.entries if e.startswith("*."))
        self.ips = {ip for ip in (parse_ip(e) for e in self.entries) if ip is not None}
        # Names listed explicitly by the Coopfile may resolve anywhere; defaults may not.
        self.trusted_names = {e.lower() for e in entries if not e.startswith("*.")
                              and parse_ip(e) is None}

    def approve(self, host: str) -> None:
        """Let `host` through from now on (the user approved it while the session runs).
        Unlike a Coopfile entry, an approved name still may not resolve to a private or
        local address: approving what the agent asked for must not open the LAN by
        surprise. An IP literal is approved as itself."""
        ip = parse_ip(host)
        if ip is not None:
            self.ips.add(ip)
        else:
            self.exact.add(host.lower().rstrip("."))
        self.entries = (*self.entries, host)

    def check_name(self, host: str) -> Decision:
        """May this host name (or IP literal) be asked for at all?"""
        ip = parse_ip(host)
        if ip is not None:
            if ip in self.ips:
                return Decision(True)
            return Decision(False, f"{host} is not on the allow list (IP addresses must be "
                                   "listed one by one)")
        name = host.lower().rstrip(".")
        if name in self.exact or any(name.endswith(s) for s in self.suffixes):
            return Decision(True)
        return Decision(False, f"{host} is not on the allow list")

    def check_address(self, host: str,
                      ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Decision:
        """May we connect to `ip`, which `host` resolved to?"""
        if is_public(ip) or ip in self.ips or host.lower().rstrip(".") in self.trusted_names:
            return Decision(True)
        return Decision(False, f"{host} resolves to {ip}, a private or local address "
                               "(list the name or the IP explicitly to allow it)")
