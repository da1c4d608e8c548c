"""`network.mode: veth` (root only): a veth pair with NAT, the internet but not the LAN.

The host end gets 10.233.K.1/30, the sandbox end (named eth0 inside) 10.233.K.2/30 with a
default route through it. One nftables table, `coop`, made with pyroute2, masquerades
10.233.0.0/16, drops forwarding from it to private, loopback, link-local and CGNAT
ranges (the host's LAN), and drops its traffic to the host itself. IPv4 forwarding is
switched on. Everything here needs root on the host; `require_root()` says so clearly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from coop.errors import SandboxError

SUBNET = "10.233.0.0/16"
BLOCKED = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
           "100.64.0.0/10", "127.0.0.0/8", "224.0.0.0/4")
TABLE = "coop"
NF_DROP, NF_ACCEPT = 0, 1
PUBLIC_RESOLVERS = ("1.1.1.1", "8.8.8.8")


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "network mode veth needs coop to run as root: it creates a network interface and "
            "NAT rules on the host.",
            "Use `network: {mode: proxy}` (the default: allowed hosts only) or `none`.")


@dataclass
class VethLink:
    host_ifname: str
    index: int

    @property
    def host_ip(self) -> str:
        return f"10.233.{self.index}.1"

    @property
    def sandbox_ip(self) -> str:
        return f"10.233.{self.index}.2"

    def remove(self) -> None:
        """Delete the host end (the kernel removes the pair; the rules stay, shared)."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=self.host_ifname)
            if links:
                ipr.link("del", index=links[0])


def _free_index(ipr: object) -> int:
    for index in range(256):
        if not ipr.link_lookup(ifname=f"coop{index}"):  # type: ignore[attr-defined]
            return index
    raise SandboxError("no free veth subnet (256 coop veth links exist).")


def setup(netns_pid: int) -> VethLink:
    """Connect the network namespace of `netns_pid` to the host with NAT."""
    require_root()
    from pyroute2 import IPRoute, NetNS

    with IPRoute() as ipr:
        index = _free_index(ipr)
        link = VethLink(f"coop{index}", index)
        peer = f"coop{index}s"
        ipr.link("add", ifname=link.host_ifname, kind="veth", peer=peer)
        host = ipr.link_lookup(ifname=link.host_ifname)[0]
        ipr.addr("add", index=host, address=link.host_ip, prefixlen=30)
        ipr.link("set", index=host, state="up")
        inside = ipr.link_lookup(ifname=peer)[0]
        ipr.link("set", index=inside, net_ns_fd=f"/proc/{netns_pid}/ns/net")
    with NetNS(f"/proc/{netns_pid}/ns/net") as ns:
        inside = ns.link_lookup(ifname=peer)[0]
        ns.link("set", index=inside, ifname="eth0")
        ns.addr("add", index=inside, address=link.sandbox_ip, prefixlen=30)
        ns.link("set", index=inside, state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=link.host_ip)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")
    _ensure_rules()
    return link


def _ensure_rules() -> None:
    """The shared `coop` table: created once, recreated if someone flushed it."""
    from pyroute2.nftables.expressions import ipv4addr, masq, verdict
    from pyroute2.nftables.main import NFTables

    nft = NFTables()
    try:
        if any(t.get("name") == TABLE for t in nft.get_tables()):
            return
        nft.table("add", name=TABLE)
        nft.chain("add", table=TABLE, name="nat", hook="postrouting", type="nat",
                  policy=NF_ACCEPT, priority=100)
        nft.rule("add", table=TABLE, chain="nat", expressions=(ipv4addr(src=SUBNET), masq()))
        nft.chain("add", table=TABLE, name="forward", hook="forward", type="filter",
                  policy=NF_ACCEPT, priority=-10)
        for blocked in BLOCKED:
            nft.rule("add", table=TABLE, chain="forward",
                     expressions=(ipv4addr(src=SUBNET, dst=blocked), verdict(NF_DROP)))
        nft.chain("add", table=TABLE, name="input", hook="input", type="filter",
                  policy=NF_ACCEPT, priority=-10)
        nft.rule("add", table=TABLE, chain="input",
                 expressions=(ipv4addr(src=SUBNET), verdict(NF_DROP)))
    finally:
        nft.close()


def resolv_conf() -> str:
    """Nameservers the sandbox can reach: the host's public ones, else public resolvers
    (a LAN or loopback resolver is exactly what veth mode keeps out of reach)."""
    from coop.net.policy import is_public, parse_ip

    servers = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    ip = parse_ip(parts[1])
                    if ip is not None and is_public(ip):
                        servers.append(parts[1])
    except OSError:
        pass
    return "".join(f"nameserver {s}\n" for s in (servers or PUBLIC_RESOLVERS))
