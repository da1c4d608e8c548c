"""This machine's LAN addresses, for the URLs `coop serve --host 0.0.0.0` prints.

Read from the kernel's interface list through pyroute2 would cost its import; a UDP
socket "connected" to a public address (nothing is sent) names the address of the
default route, which is the one a phone on the same network can reach. Other
interfaces' addresses come from the host name's resolution.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket


def lan_addresses() -> list[str]:
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like the internet, never sent
        found.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(str(info[4][0]))
    usable = []
    for address in found:
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_unspecified or ip.is_link_local) and \
                address not in usable:
            usable.append(address)
    return usable
