"""A compiled NSG: what compile/ produces and the data plane (agents/host.py, linux/nsg_nft.py) loads.

Rules are in evaluation order (priority, then name; Azure's defaults last); addresses are `ipaddress`
networks with the service tags already resolved, ports closed intervals. Frozen, so programs and rules
are hashable: a rule's hash is computed once, as the renderers key their caches on runs of rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from isthmus.model.addresses import IPNetwork, Network

PortRange = tuple[int, int]  # closed interval
ALL_PORTS: tuple[PortRange, ...] = ((0, 65535),)


# What pydantic reads a network from (a TypeAdapter over these dataclasses): pydantic's own IPv4Network |
# IPv6Network validator parses every prefix again (24 of 25 ms for a program of 1,000 rules).
Prefix = IPNetwork


@dataclass(frozen=True)
class NsgContext:
    """What service tags mean where the NSG applies."""

    virtual_network: tuple[Network, ...]  # the VNet's address space (and on-premises prefixes)
    azure_load_balancer: tuple[Network, ...]  # the platform's health-probe source(s)


@dataclass(frozen=True)
class Rule:
    name: str
    default: bool  # one of Azure's default rules
    priority: int
    direction: str  # Inbound | Outbound
    access: str  # Allow | Deny
    protocol: str  # Tcp | Udp | Icmp | Esp | Ah | *
    source_prefixes: tuple[Prefix, ...]
    source_ports: tuple[PortRange, ...]
    destination_prefixes: tuple[Prefix, ...]
    destination_ports: tuple[PortRange, ...]

    @property
    def qualified_name(self) -> str:
        return f"{'defaultSecurityRules' if self.default else 'securityRules'}/{self.name}"

    @cached_property
    def _hash(self) -> int:
        # Without the prefixes: hashing an ipaddress network runs Python code (most of a rule's hash). Rules
        # that differ only in their prefixes (one rule in two VNets) share a hash; equality tells them apart.
        return hash((self.name, self.default, self.priority, self.direction, self.access, self.protocol,
                     self.source_ports, self.destination_ports))  # fmt: skip

    def __hash__(self) -> int:  # defined here, so dataclass keeps it (and the renderers' caches hash rules)
        return self._hash


@dataclass(frozen=True)
class NsgProgram:
    inbound: tuple[Rule, ...]  # user rules, then the defaults, by priority: the first match decides
    outbound: tuple[Rule, ...]
