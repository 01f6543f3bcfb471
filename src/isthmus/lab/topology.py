"""The lab's shape and address plan (ARCHITECTURE.md): names, addresses, which node is which."""

from __future__ import annotations

from dataclasses import dataclass

UNDERLAY_PREFIXLEN = 24
TOR_UNDERLAY = "198.18.0.1"
TOR_UPLINK = "198.51.100.1"
INTERNET_HOST = "198.51.100.10"
CONTROLLER = "198.18.255.1"
CONTROLLER_PORT = 8443
PUBLIC_POOL = "203.0.113.0/24"
TOR_ASN = 65000
MUX_ASN = 65010
UNDERLAY_MTU = 9000
PROVIDER_DEVICE = "prov0"  # a gateway node's interface on the provider network (br-prov): L3 connections


@dataclass(frozen=True)
class Node:
    name: str  # the node name agents and the operator API use
    role: str  # host | mux | gateway
    underlay: str
    management: str


@dataclass(frozen=True)
class Topology:
    prefix: str  # every namespace of the lab starts with it, e.g. "isl-"
    hosts: int = 2
    muxes: int = 1
    gateways: int = 3

    def nodes(self) -> list[Node]:
        out = [Node(f"mux{i}", "mux", f"198.18.0.{10 + i}", f"198.18.255.{10 + i}") for i in range(1, self.muxes + 1)]
        out += [Node(f"gw{i}", "gateway", f"198.18.0.{50 + i}", f"198.18.255.{50 + i}")
                for i in range(1, self.gateways + 1)]  # fmt: skip
        out += [Node(f"h{i}", "host", f"198.18.0.{100 + i}", f"198.18.255.{100 + i}") for i in range(1, self.hosts + 1)]
        return out

    def netns(self, what: str) -> str:
        """The namespace of a node or lab part: fabric, ctl, tor, inet, or a node name."""
        return f"{self.prefix}{what}"

    def vm_netns(self, host: str, vm: str) -> str:
        return f"{self.prefix}{host}-vm-{vm}"  # what the host agent names it (agents/host.py)

    controllers: int = 1  # controller replicas: more than one share a PostgreSQL store and elect a leader

    def controller_port(self, replica: int) -> int:
        """Replica `replica`'s (0, 1, ...) port on the management network."""
        return CONTROLLER_PORT + replica

    @property
    def controller_url(self) -> str:
        """What the agents are given: every replica's URL on the management network, comma-separated."""
        return ",".join(f"https://{CONTROLLER}:{self.controller_port(i)}" for i in range(self.controllers))
