"""NSG programs (from the host document) as nftables rules in a VNet router namespace. Pure text.

Per VM port, a chain runs the NSGs in Azure's order; the forward hook dispatches to it through a verdict
map keyed by interface, so the per-packet cost does not grow with the number of ports:

    forward ─ ct established,related ─► accept          (stateful: only a flow's first packet is judged)
       ├─ iifname vmap { port: jump port-out }  ─► nsg(NIC)-out ─► nsg(subnet)-out     (VM sending)
       └─ oifname vmap { port: jump port-in }   ─► nsg(subnet)-in ─► nsg(NIC)-in       (VM receiving)

In an NSG chain an Allow rule returns (the next NSG still has its say) and a Deny rule drops. Prefix and
port lists are anonymous interval sets, so one rule costs one lookup however many prefixes it names; the
protocol groups are two named sets shared by all rules. A flow's first packet walks the NSG's rules in
order (established packets never do). Merging runs of same-access rules into one concatenated interval
set was tried: the kernel rejects overlapping intervals in a concatenated set ("File exists"), and rules'
intervals overlap freely, so that needs a disjoint decomposition first (not done).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TABLE = "isthmus"
PROTOCOLS = {"Tcp": "tcp", "Udp": "udp", "Icmp": "@icmp_any", "Esp": "esp", "Ah": "ah"}
# Named once per table: an anonymous set per rule would be one more kernel object per rule (twice the load time).
SHARED_SETS = [
    "set ported {", "type inet_proto", "elements = { tcp, udp }", "}",
    "set icmp_any {", "type inet_proto", "elements = { icmp, ipv6-icmp }", "}",
]  # fmt: skip
ALL_PORTS = [[0, 65535]]


@dataclass(frozen=True)
class Port:
    """A VM port in the router: its interface and the NSGs that guard it (None where absent)."""

    interface: str
    nic_nsg: str | None  # key into the programs mapping
    subnet_nsg: str | None


def chain_of(index: int, direction: str) -> str:
    return f"nsg{index}-{direction}"


def render_filter(ports: Sequence[Port], programs: Mapping[str, Mapping[str, Any]]) -> str:
    """The body of `table inet isthmus` (without the table line): forward hook, port chains, NSG chains."""
    used = sorted({n for p in ports for n in (p.nic_nsg, p.subnet_nsg) if n is not None})
    index = {nsg: i for i, nsg in enumerate(used)}
    lines = [
        *SHARED_SETS,
        "chain forward {",
        "type filter hook forward priority filter; policy accept;",
        "ct state established,related accept",
        "ct state invalid drop",
    ]
    if ports:
        outs = ", ".join(f'"{p.interface}" : jump port-{p.interface}-out' for p in ports)
        ins = ", ".join(f'"{p.interface}" : jump port-{p.interface}-in' for p in ports)
        lines += [f"iifname vmap {{ {outs} }}", f"oifname vmap {{ {ins} }}"]
    lines.append("}")
    for port in ports:
        nic = index.get(port.nic_nsg) if port.nic_nsg else None
        subnet = index.get(port.subnet_nsg) if port.subnet_nsg else None
        outbound = [f"jump {chain_of(i, 'out')}" for i in (nic, subnet) if i is not None]
        inbound = [f"jump {chain_of(i, 'in')}" for i in (subnet, nic) if i is not None]
        lines += [f"chain port-{port.interface}-out {{", *outbound, "}"]
        lines += [f"chain port-{port.interface}-in {{", *inbound, "}"]
    for nsg in used:
        program = programs[nsg]
        for direction, key in (("in", "inbound"), ("out", "outbound")):
            lines.append(f"chain {chain_of(index[nsg], direction)} {{")
            for rule in program[key]:
                lines.extend(rule_lines(rule))
            lines.append("}")
    return "\n".join(lines)


def rule_lines(rule: Mapping[str, Any]) -> list[str]:
    """One compiled rule as nft rules: one per address family it can match, and for protocol `*` with
    ports a TCP/UDP rule with the ports plus a rule for every other protocol without them."""
    verdict = "return" if rule["access"] == "Allow" else "drop"
    comment = f'comment "{rule["name"][:100]}"'
    protocol = rule["protocol"]
    ports = _ports(rule)
    out = []
    for family, any_net in (("ip", "0.0.0.0/0"), ("ip6", "::/0")):
        version = 4 if family == "ip" else 6
        sources = [p for p in rule["sourcePrefixes"] if (":" in p) == (version == 6)]
        destinations = [p for p in rule["destinationPrefixes"] if (":" in p) == (version == 6)]
        if not sources or not destinations:
            continue
        addresses = " ".join(
            f"{family} {side} {_set(values)}"
            for side, values in (("saddr", sources), ("daddr", destinations))
            if values != [any_net]
        )
        # An address match implies the family; without one the rule must still name it, or the IPv6 half
        # of a rule would judge IPv4 packets too (the kernel property test found exactly that).
        addresses = addresses or f"meta nfproto {'ipv4' if version == 4 else 'ipv6'}"
        if protocol == "*":
            if ports:
                out.append(_join(addresses, "meta l4proto @ported", ports, verdict, comment))
                out.append(_join(addresses, "meta l4proto != @ported", verdict, comment))
            else:
                out.append(_join(addresses, verdict, comment))
        else:
            out.append(_join(addresses, f"meta l4proto {PROTOCOLS[protocol]}", ports, verdict, comment))
    return out


def _ports(rule: Mapping[str, Any]) -> str:
    if rule["protocol"] not in ("Tcp", "Udp", "*"):
        return ""
    parts = []
    for side, key in (("sport", "sourcePorts"), ("dport", "destinationPorts")):
        if rule[key] != ALL_PORTS:
            parts.append(f"th {side} {_set([f'{lo}-{hi}' if lo != hi else str(lo) for lo, hi in rule[key]])}")
    return " ".join(parts)


def _set(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
