"""A VNet's router namespace on one host, and the VM namespaces plugged into it.

    host netns ── t<vni> ═veth═ up0 ── router netns ── n<port> ═veth═ eth0 ── VM netns
        │                                  │ (subnet gateways on lo, proxy ARP, NSGs, NAT)
        └── VXLAN socket (created here) ── x<vni> (moved into the router: routed VXLAN, static FDB)

`realize` makes one router match its spec and returns the number of changes it made; a second call
with the same spec makes none. Nothing that matches is ever removed and re-added.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any

from isthmus.linux import nft
from isthmus.linux.nat_nft import TRANSIT
from isthmus.linux.routes import Route, ensure_fdb, ensure_neighbours, ensure_routes
from isthmus.linux.run import LinuxError, add_netns, ip_batch, ip_json, list_netns, sysctl
from isthmus.model.documents import RemoteHost

ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.proxy_arp": "1",  # answer for every address routed elsewhere: VMs see one L2 hop
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}
VXLAN_PORT = 4789
MTU = 1500


@dataclass(frozen=True)
class VmPort:
    interface: str  # n<hash> in the router
    netns: str  # the VM's namespace
    mac: str
    addresses: tuple[str, ...]  # private IPv4 addresses, primary first
    prefixlen: int
    gateway: str


@dataclass(frozen=True)
class Remote:
    vtep: str
    router_mac: str
    addresses: tuple[str, ...]

    @classmethod
    def of(cls, remote: RemoteHost) -> Remote:
        """A document's remote router, with its IPv4 addresses (the routers are IPv4 only)."""
        return cls(str(remote.vtep), remote.router_mac, tuple(str(a) for a in remote.addresses if a.version == 4))


@dataclass(frozen=True)
class RouterSpec:
    netns: str
    vni: int
    router_mac: str
    underlay: str  # this host's VTEP address
    transit: tuple[str, str]  # (host side, router side) of the /31 between them
    gateways: tuple[str, ...]
    ports: tuple[VmPort, ...]
    remotes: tuple[Remote, ...]
    filter_body: str
    nat_body: str
    site_routes: tuple[tuple[str, str], ...] = ()  # (on-premises prefix, the gateway compartment's address)
    # A gateway compartment's own address in the VNet: the source of its ICMP errors (a "fragmentation needed"
    # from a subnet's gateway address, which the hosts' routers hold too, would never reach the VM: PMTU breaks).
    icmp_source: str | None = None
    vxlan: str = field(init=False)
    uplink: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vxlan", f"x{self.vni}")
        object.__setattr__(self, "uplink", f"t{self.vni}")


def realize(spec: RouterSpec, host_netns: str | None, *, check_vms: bool = True) -> int:
    changes = 0
    existing = list_netns()
    if spec.netns not in existing:
        add_netns(spec.netns)
        changes += 1
    if check_vms or changes:  # on creation and on every full pass
        sysctl(spec.netns, ROUTER_SYSCTLS)
    links = {link["ifname"]: link for link in ip_json(spec.netns, "link", "show")}
    if "up0" not in links:
        # The node's end of a router's earlier uplink outlives its namespace while anything still holds that
        # open: deleting it takes the whole pair, so that the new one can be made under the same name.
        with contextlib.suppress(LinuxError):
            ip_batch(host_netns, [f"link del {spec.uplink}"])
        ip_batch(host_netns, [f"link add {spec.uplink} type veth peer name up0 netns {spec.netns}"])
        ip_batch(host_netns, [f"addr add {spec.transit[0]}/31 dev {spec.uplink}", f"link set {spec.uplink} up"])
        ip_batch(
            spec.netns,
            [
                f"addr add {spec.transit[1]}/31 dev up0",
                "link set up0 up",
                f"route replace default via {spec.transit[0]} dev up0",
            ],
        )
        changes += 1
    if spec.vxlan not in links:
        ip_batch(
            host_netns,
            [
                f"link add {spec.vxlan} type vxlan id {spec.vni} local {spec.underlay} dstport {VXLAN_PORT} nolearning",
                f"link set {spec.vxlan} netns {spec.netns}",
            ],
        )
        ip_batch(spec.netns, [f"link set {spec.vxlan} address {spec.router_mac} mtu {MTU} up"])
        changes += 1
    elif links[spec.vxlan].get("address") != spec.router_mac:
        ip_batch(spec.netns, [f"link set {spec.vxlan} address {spec.router_mac}"])
        changes += 1
    changes += _gateways(spec)
    if spec.icmp_source is not None:  # the source address the kernel picks for what leaves on the VXLAN device
        ip_batch(spec.netns, [f"addr replace {spec.icmp_source}/32 dev {spec.vxlan}"])
    wanted_ports = {p.interface for p in spec.ports}
    stale = [name for name in links if name.startswith("n") and name not in wanted_ports]
    ip_batch(spec.netns, [f"link del {name}" for name in sorted(stale)])
    changes += len(stale)
    plugged = [(port, _plug(spec, port, port.interface in links, existing)) for port in spec.ports]
    changes += sum(made for _port, made in plugged)
    routes = [Route(a, port.interface) for port in spec.ports for a in port.addresses]
    routes += [Route(a, spec.vxlan) for remote in spec.remotes for a in remote.addresses]
    routes += [Route(prefix, spec.vxlan, via) for prefix, via in spec.site_routes]
    changes += ensure_routes(spec.netns, routes)
    neighbours = {a: remote.router_mac for remote in spec.remotes for a in remote.addresses}
    changes += ensure_neighbours(spec.netns, spec.vxlan, neighbours)
    changes += ensure_fdb(spec.netns, spec.vxlan, {r.router_mac: r.vtep for r in spec.remotes})
    changes += nft.ensure_table(spec.netns, "inet", "isthmus", spec.filter_body, verify=check_vms)
    changes += nft.ensure_table(spec.netns, "ip", "isthmus_nat", spec.nat_body, verify=check_vms)
    # The guest's side last: once a VM has its address, its routes and filters are already in place.
    changes += sum(_vm(port) for port, made in plugged if made or check_vms)
    return changes


def transit_pairs(vnis: set[int], links: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """The /31 between the node and each of its VNet routers (t<vni>, from `links`: `ip -j addr show` of the
    node): kept from the kernel, new ones take the lowest free."""
    held: dict[int, int] = {}
    for link in links:
        name = link["ifname"]
        if name.startswith("t") and name[1:].isdigit():
            for info in link.get("addr_info", []):
                if info["family"] == "inet":
                    held[int(name[1:])] = int(ip_address(info["local"]))
    base = ip_network(TRANSIT)
    taken = set(held.values())
    free = (int(base.network_address) + 2 * i for i in range(base.num_addresses // 2))
    out = {}
    for vni in sorted(vnis):
        if vni not in held:
            held[vni] = next(a for a in free if a not in taken)
        low = held[vni]
        out[vni] = (str(ip_address(low)), str(ip_address(low + 1)))
    return out


def _gateways(spec: RouterSpec) -> int:
    [lo] = ip_json(spec.netns, "addr", "show", "dev", "lo")
    actual = {a["local"] for a in lo.get("addr_info", []) if a["family"] == "inet" and a["local"] != "127.0.0.1"}
    wanted = set(spec.gateways)
    lines = [f"addr del {a}/32 dev lo" for a in sorted(actual - wanted)]
    lines += [f"addr add {a}/32 dev lo" for a in sorted(wanted - actual)]
    ip_batch(spec.netns, lines)
    return len(lines)


def _plug(spec: RouterSpec, port: VmPort, linked: bool, existing: set[str]) -> int:
    """The router's side of the port: the VM namespace and the veth between them."""
    changes = 0
    if port.netns not in existing:
        add_netns(port.netns)
        linked = False
        changes += 1
    if not linked:
        ip_batch(spec.netns, [f"link add {port.interface} type veth peer name eth0 netns {port.netns}"])
        # Proxy ARP answers at once (the default delays each answer by up to 0.8 s).
        ip_batch(spec.netns, [f"ntable change name arp_cache dev {port.interface} proxy_delay 0",
                              f"link set {port.interface} up"])  # fmt: skip
        changes += 1
    return changes


def _vm(port: VmPort) -> int:
    """The VM's side of the port: what DHCP would give a guest (address, MAC, default route)."""
    links = ip_json(port.netns, "addr", "show", "dev", "eth0")
    if not links:  # the VM namespace lost its port: it is re-plugged on the next pass
        return 0
    eth0 = links[0]
    actual = {f"{a['local']}/{a['prefixlen']}" for a in eth0.get("addr_info", []) if a["family"] == "inet"}
    wanted = [f"{a}/{port.prefixlen}" for a in port.addresses]
    lines = []
    if eth0.get("address") != port.mac:
        lines += ["link set eth0 down", f"link set eth0 address {port.mac}"]
    lines += [f"addr del {a} dev eth0" for a in sorted(actual - set(wanted))]
    lines += [f"addr add {a} dev eth0" for a in wanted if a not in actual]
    if lines or "UP" not in eth0.get("flags", []):
        lines.append("link set eth0 up")
    default = ip_json(port.netns, "route", "show", "default")
    if not default or default[0].get("gateway") != port.gateway:
        lines.append(f"route replace default via {port.gateway} dev eth0 onlink")
    ip_batch(port.netns, lines)
    return len(lines)
