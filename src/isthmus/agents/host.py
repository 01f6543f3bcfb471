"""The host agent: makes a compute host's Linux match its desired document.

Per VNet with NICs here, a router namespace (linux/router.py); per NIC, a VM port; public IPs routed
into their router and DNATed there; outbound NAT; NSGs as nftables. Level-triggered: each pass reads the
kernel, compares, and changes only what differs. A restart finds its own objects (router and VM
namespaces by name, routes by protocol, nftables tables by digest) and leaves working state alone.
"""

from __future__ import annotations

import hashlib
import logging
from ipaddress import IPv4Network, ip_interface
from typing import Any

from isthmus.agents.loop import Outcome
from isthmus.linux import nft
from isthmus.linux.nat_nft import host_guard, router_nat
from isthmus.linux.nsg_nft import Port, render_filter
from isthmus.linux.router import Remote, RouterSpec, VmPort, realize, transit_pairs
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import LinuxError, delete_netns, ip_json, list_netns, sysctl
from isthmus.model.documents import Delta, HostDocument, NetworkInterface, Subnet, VirtualNetwork
from isthmus.model.nsg import NsgProgram

log = logging.getLogger("isthmus.agent.host")


def port_name(nic_id: str) -> str:
    return "n" + hashlib.sha256(nic_id.lower().encode()).hexdigest()[:8]


def colon_mac(azure_mac: str) -> str:
    return azure_mac.replace("-", ":").lower()


class HostReconciler:
    def __init__(self, node: str, prefix: str) -> None:
        self.node = node
        self.router_prefix = f"{prefix}{node}-vnet"
        self.vm_prefix = f"{prefix}{node}-vm-"
        self.realized: dict[str, RouterSpec] = {}  # router netns -> the spec last applied without error
        self.last_good: dict[str, NetworkInterface] = {}  # NIC id -> its last entry this host could realise
        sysctl(None, {"net.ipv4.ip_forward": "1"})

    def healthy(self) -> bool:
        return True  # nothing supervised: the kernel holds the state

    def vm_netns(self, vm: str) -> str:
        return f"{self.vm_prefix}{vm}"

    def reconcile(self, doc: HostDocument, *, full: bool, deltas: tuple[Delta, ...] = ()) -> Outcome:
        outcome = Outcome()
        host_links = ip_json(None, "addr", "show")  # read once: transit /31s and the host's own networks
        transit = transit_pairs({v.vni for v in doc.virtual_networks}, host_links)
        programs = {p.key: p.program for p in doc.network_security_groups}
        nics_by_vnet: dict[str, list[NetworkInterface]] = {}
        for nic in doc.network_interfaces:
            nics_by_vnet.setdefault(nic.virtual_network, []).append(nic)
        host_routes: list[Route] = []
        wanted_routers: set[str] = set()
        wanted_vms: set[str] = set()
        changes = 0
        for vnet in doc.virtual_networks:
            nics = nics_by_vnet.get(vnet.key, [])
            spec, public, failures = self._spec(doc, vnet, nics, transit[vnet.vni], programs)
            wanted_routers.add(spec.netns)
            wanted_vms.update(p.netns for p in spec.ports)
            affected = [vnet.id, *(n.id for n in nics), *self._nsgs_of(vnet, nics)]
            try:
                if full or self.realized.get(spec.netns) != spec:
                    changes += realize(spec, None, check_vms=full or spec.netns not in self.realized)
                    self.realized[spec.netns] = spec
                for key in affected:
                    outcome.resources[key] = {"state": "Succeeded", "message": ""}
                host_routes += [Route(vip, spec.uplink, spec.transit[1]) for vip in public]
            except LinuxError as error:
                self.realized.pop(spec.netns, None)
                log.warning("VNet %s: %s", vnet.id, error)
                for key in affected:
                    outcome.resources[key] = {"state": "Failed", "message": str(error)}
            for nic_id, message in failures.items():
                outcome.resources[nic_id] = {"state": "Failed", "message": message}
        changes += self._remove_stale(wanted_routers, wanted_vms)
        outbound = str(doc.outbound_nat_address) if doc.outbound_nat_address else None
        if outbound:
            host_routes.append(Route(outbound, blackhole=True))  # only replies (de-NATed before routing) pass
        changes += ensure_routes(None, host_routes)
        changes += nft.ensure_table(None, "ip", "isthmus_host", host_guard(outbound, self._infrastructure(host_links)))
        outcome.details = {"routers": len(wanted_routers), "vms": len(wanted_vms), "changes": changes}
        return outcome

    def _spec(
        self,
        doc: HostDocument,
        vnet: VirtualNetwork,
        nics: list[NetworkInterface],
        transit: tuple[str, str],
        programs: dict[str, NsgProgram],
    ) -> tuple[RouterSpec, dict[str, str], dict[str, str]]:
        subnets = {s.id.lower(): s for s in vnet.subnets}
        ports, guards, public, failures = [], [], {}, {}
        for wanted in nics:
            if not wanted.vm:
                continue
            problem = self._problem(wanted, subnets)
            if problem:
                failures[wanted.id] = problem
            else:
                self.last_good[wanted.id] = wanted
            nic = self.last_good.get(wanted.id) if problem else wanted
            if nic is None or nic.vm is None:
                continue
            configs = nic.ip_configurations
            subnet = subnets[configs[0].subnet.lower()]
            index, prefix = next((i, p) for i, p in enumerate(subnet.address_prefixes) if p.version == 4)
            name = port_name(nic.id)
            ports.append(
                VmPort(
                    interface=name,
                    netns=self.vm_netns(nic.vm),
                    mac=colon_mac(nic.mac_address),
                    addresses=tuple(str(c.private_ip_address) for c in configs),
                    prefixlen=prefix.prefixlen,
                    gateway=str(subnet.gateways[index]),
                )
            )
            nic_nsg = nic.network_security_group
            subnet_nsg = subnet.network_security_group
            guards.append(
                Port(
                    name,
                    f"{nic_nsg}|{vnet.key}" if nic_nsg else None,
                    f"{subnet_nsg}|{vnet.key}" if subnet_nsg else None,
                )
            )
            for config in configs:
                if config.public_ip_address:
                    public[str(config.public_ip_address)] = str(config.private_ip_address)
        gateways = sorted({str(g) for s in vnet.subnets for g in s.gateways if g.version == 4})
        remotes = tuple(Remote.of(r) for r in vnet.remotes) + tuple(
            Remote(str(s.vtep), s.router_mac, (str(s.next_hop),)) for s in vnet.site_routes
        )
        sites = tuple((str(p), str(s.next_hop)) for s in vnet.site_routes for p in s.prefixes if p.version == 4)
        assert vnet.router_mac is not None and doc.address is not None, "a host with VNets has an address"
        spec = RouterSpec(
            netns=f"{self.router_prefix}{vnet.vni}",
            vni=vnet.vni,
            router_mac=vnet.router_mac,
            underlay=str(doc.address),
            transit=transit,
            gateways=tuple(gateways),
            ports=tuple(sorted(ports, key=lambda p: p.interface)),
            remotes=remotes,
            filter_body=render_filter(sorted(guards, key=lambda p: p.interface), programs),
            nat_body=router_nat(public, transit[1]),
            site_routes=sites,
        )
        return spec, public, failures

    @staticmethod
    def _problem(nic: NetworkInterface, subnets: dict[str, Subnet]) -> str | None:
        """Why this host cannot realise the NIC (it then keeps the NIC's last good state), or None."""
        configs = nic.ip_configurations
        if any(c.private_ip_address.version == 6 for c in configs):
            return "IPv6 ipConfigurations are not supported by this host agent yet."
        if configs[0].subnet.lower() not in subnets:
            return "The NIC's subnet is not in its virtual network."
        return None

    @staticmethod
    def _nsgs_of(vnet: VirtualNetwork, nics: list[NetworkInterface]) -> set[str]:
        nsgs = {s.network_security_group for s in vnet.subnets if s.network_security_group}
        return nsgs | {n.network_security_group for n in nics if n.network_security_group}

    @staticmethod
    def _infrastructure(host_links: list[dict[str, Any]]) -> list[str]:
        """Networks of the host's own (non-tenant) addresses: the underlay and management networks."""
        networks = set()
        for link in host_links:
            if link["ifname"] == "lo" or link["ifname"][:1] in ("t", "x"):
                continue
            for info in link.get("addr_info", []):
                if info["family"] == "inet":
                    networks.add(ip_interface(f"{info['local']}/{info['prefixlen']}").network)
        return [
            str(n)
            for n in sorted(networks, key=lambda n: (int(n.network_address), n.prefixlen))
            if isinstance(n, IPv4Network)
        ]

    def _remove_stale(self, routers: set[str], vms: set[str]) -> int:
        removed = 0
        for name in sorted(list_netns()):
            if (name.startswith(self.router_prefix) and name not in routers) or (
                name.startswith(self.vm_prefix) and name not in vms
            ):
                delete_netns(name)
                self.realized.pop(name, None)
                removed += 1
        return removed
