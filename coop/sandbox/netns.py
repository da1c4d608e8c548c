"""Network set-up inside a fresh network namespace.

Loopback is brought up with one `SIOCSIFFLAGS` ioctl rather than pyroute2: importing
pyroute2 costs about 130 ms on these machines (measured with `-X importtime`), more than
the whole sandbox start budget, and one flag on one interface needs no netlink. pyroute2
is the tool for veth pairs and NAT (the network issue), where netlink is really needed.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40


def loopback_up() -> None:
    """Set `lo` up in the current network namespace (needs CAP_NET_ADMIN there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo",
                                                    flags | IFF_UP | IFF_RUNNING))
