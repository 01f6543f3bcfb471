"""A compartment's L3 forwarding links: one device per L3 connection on the node's provider network, no
encapsulation, the remote prefixes routed to the connection's next hop.

The device is a macvlan of the node's provider interface (or, with a `vlanId` and a kernel with 802.1Q, a VLAN
sub-interface of it), made in the node's namespace and moved into the compartment, named `l3` + a digest of the
connection id. Its MAC is derived from the connection id too, so the provider's router keeps its ARP entry when
the connection moves to another gateway node; the new device announces itself with a gratuitous ARP at once,
which also teaches the provider network's switches where that MAC now is.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_interface

from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import LinuxError, ip_batch, ip_json
from isthmus.linux.sockets import socket_in
from isthmus.model.documents import Connection

PREFIX = "l3"
ROUTE_PROTO = "79"  # the links' routes, apart from the compartment router's (77) and GRE's (78)


@dataclass(frozen=True, order=True)
class L3Link:
    device: str
    local: str  # the gateway's address on the link network, with its prefix length
    next_hop: str
    prefixes: tuple[str, ...]  # routed to the next hop
    vlan: int | None
    mac: str


def _digest(connection_id: str) -> bytes:
    return hashlib.sha256(connection_id.lower().encode()).digest()


def device_name(connection_id: str) -> str:
    return PREFIX + _digest(connection_id).hex()[:10]


def link_mac(connection_id: str) -> str:
    """A locally administered unicast MAC that is the connection's on every node."""
    octets = bytes([0x02]) + _digest(connection_id)[10:15]
    return ":".join(f"{b:02x}" for b in octets)


def link_of(connection: Connection) -> L3Link | None:
    settings = connection.l3_forwarding_settings
    if connection.connection_type != "L3" or settings is None or not settings.local_address or not settings.next_hop:
        return None
    return L3Link(
        device=device_name(connection.id),
        local=str(settings.local_address),
        next_hop=str(settings.next_hop),
        prefixes=tuple(str(p) for p in connection.remote_prefixes if p.version == 4),
        vlan=settings.vlan_id,
        mac=link_mac(connection.id),
    )


def ensure_links(netns: str, parent: str | None, links: Sequence[L3Link]) -> int:
    """Make the compartment's L3 devices, addresses and routes exactly `links` (made on `parent`, the node's
    provider interface); the changes made. Raises LinuxError if a link is wanted and there is no parent."""
    held = {link["ifname"]: link for link in ip_json(netns, "-d", "addr", "show")}
    wanted = {link.device: link for link in links}
    lines = [f"link del {name}" for name in sorted(held) if name.startswith(PREFIX) and name not in wanted]
    made = []
    for device, link in sorted(wanted.items()):
        current = held.get(device)
        if current is not None and _matches(current, link):
            held_addresses = current.get("addr_info", [])
            addresses = {f"{a['local']}/{a['prefixlen']}" for a in held_addresses if a["family"] == "inet"}
            if addresses != {link.local} or "UP" not in current.get("flags", ()):
                lines += [f"addr flush dev {device}", f"addr add {link.local} dev {device}", f"link set {device} up"]
            continue
        if current is not None:
            lines.append(f"link del {device}")
        made.append(link)
    ip_batch(netns, lines)
    if made and parent is None:
        raise LinuxError(f"L3 connections need the node's provider network (agent --provider-device): {netns}")
    for link in made:
        kind = f"vlan id {link.vlan}" if link.vlan is not None else "macvlan mode bridge"
        ip_batch(None, [f"link add link {parent} name {link.device} address {link.mac} type {kind}",
                        f"link set {link.device} netns {netns}"])  # fmt: skip
        ip_batch(netns, [f"link set {link.device} address {link.mac}", f"addr add {link.local} dev {link.device}",
                         f"link set {link.device} up"])  # fmt: skip
    routes = [Route(prefix, link.device, link.next_hop) for link in links for prefix in link.prefixes]
    changes = len(lines) + 3 * len(made) + ensure_routes(netns, routes, proto=ROUTE_PROTO)
    for link in made:
        announce(netns, link)
    return changes


def _matches(current: dict[str, object], link: L3Link) -> bool:
    info = current.get("linkinfo")
    kind = info.get("info_kind") if isinstance(info, dict) else None
    vlan = info.get("info_data", {}).get("id") if isinstance(info, dict) and kind == "vlan" else None
    return (
        current.get("address") == link.mac
        and kind == ("vlan" if link.vlan is not None else "macvlan")
        and (vlan == link.vlan)
    )


def gratuitous_arp(mac: str, address: str) -> bytes:
    """An Ethernet broadcast ARP request for `address` from itself (RFC 5227's announcement)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    ip = socket.inet_aton(address)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip + b"\0" * 6 + ip
    return b"\xff" * 6 + hw + struct.pack("!H", 0x0806) + arp


def announce(netns: str, link: L3Link) -> None:
    """Send the link's gratuitous ARP from inside the compartment (best effort: a lost one only delays the
    provider's switches until the first packet the link sends)."""
    with contextlib.suppress(OSError):
        sock = socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW)
        with sock:
            sock.bind((link.device, 0))
            sock.send(gratuitous_arp(link.mac, str(ip_interface(link.local).ip)))
