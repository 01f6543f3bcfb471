"""NSG programs (model/nsg.py, from the host document) as nftables rules in a VNet router namespace. Pure text.

Per VM port, a chain runs the NSGs in Azure's order; the forward hook dispatches to it through a verdict
map keyed by interface, so the per-packet cost does not grow with the number of ports:

    forward ─ ct established,related ─► accept          (stateful: only a flow's first packet is judged)
       ├─ iifname vmap { port: jump port-out }  ─► nsg(NIC)-out ─► nsg(subnet)-out     (VM sending)
       └─ oifname vmap { port: jump port-in }   ─► nsg(subnet)-in ─► nsg(NIC)-in       (VM receiving)

In an NSG chain an Allow rule returns (the next NSG still has its say) and a Deny rule drops. Consecutive
rules with the same access form a run; inside a run order cannot matter (any match has the same verdict),
so a run becomes one lookup in a concatenated interval set: saddr . daddr . protocol . sport . dport for
TCP and UDP, saddr . daddr . protocol for the rest. The kernel refuses overlapping elements in such sets
and rules overlap freely, so the run's boxes are first made disjoint (linux/boxes.py). A flow's first
packet then costs a few lookups per run, not one rule per NSG rule; a run of one rule stays a plain rule
with the rule's name as its comment, and so does a run whose disjoint form would be too large.

A run's sets are cached by its rules, so rendering an NSG again costs only the runs that changed. Sets and
chains are named by NSG and run position, so an edit inside a run keeps every name and linux/nft.py
changes the loaded table in place (the edited rule's few set elements deleted and added).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv6Address

from isthmus.linux.boxes import disjoint, forget_slices
from isthmus.model.addresses import Network
from isthmus.model.nsg import ALL_PORTS, NsgProgram, Rule

PROTOCOLS = {"Tcp": "tcp", "Udp": "udp", "Icmp": "@icmp_any", "Esp": "esp", "Ah": "ah"}
# Named once per table: an anonymous set per rule would be one more kernel object per rule (twice the load time).
SHARED_SETS = [
    "set ported {", "type inet_proto", "elements = { tcp, udp }", "}",
    "set icmp_any {", "type inet_proto", "elements = { icmp, ipv6-icmp }", "}",
]  # fmt: skip


@dataclass(frozen=True)
class Port:
    """A VM port in the router: its interface and the NSGs that guard it (None where absent)."""

    interface: str
    nic_nsg: str | None  # key into the programs mapping
    subnet_nsg: str | None


def chain_of(index: int, direction: str) -> str:
    return f"nsg{index}-{direction}"


def render_filter(ports: Sequence[Port], programs: Mapping[str, NsgProgram]) -> str:
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
        for direction, rules in (("in", program.inbound), ("out", program.outbound)):
            lines.append(f"chain {chain_of(index[nsg], direction)} {{")
            body, sets = chain_body(chain_of(index[nsg], direction), rules)
            lines += [*body, "}", *sets]
    return "\n".join(lines)


MAX_RUN_ELEMENTS = 20_000  # beyond this a run is loaded as plain rules
FAMILIES = ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr"))
ALL = (0, 65535)


def chain_body(chain: str, rules: Sequence[Rule]) -> tuple[list[str], list[str]]:
    """(the chain's rules, the set definitions they use), runs of one access as set lookups, in order."""
    runs: list[list[Rule]] = []
    for rule in rules:
        if runs and runs[-1][0].access == rule.access:
            runs[-1].append(rule)
        else:
            runs.append([rule])
    body: list[str] = []
    sets: list[str] = []
    for number, run in enumerate(runs):
        lookups = _run_sets(f"{chain}-run{number}", tuple(run)) if len(run) > 1 else None
        if lookups is None:
            for rule in run:
                body.extend(rule_lines(rule))
            continue
        verdict = "return" if run[0].access == "Allow" else "drop"
        names = ", ".join(r.name for r in run[:3]) + (f" +{len(run) - 3}" if len(run) > 3 else "")
        comment = f'comment "{f"{len(run)} rules: {names}"[:100]}"'
        for match, definition in lookups:
            body.append(f"{match} {verdict} {comment}")
            sets.extend(definition)
    return body, sets


Box = tuple[tuple[int, int], ...]


@lru_cache(maxsize=1024)
def _run_sets(name: str, run: tuple[Rule, ...]) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """(match, set definition) per family and kind for a run; None if its disjoint form is too large.
    Cached by content: a run that did not change (a re-load, another NSG edited) costs its hash."""
    out = []
    total = 0
    for version, family, address_type in FAMILIES:
        per_rule = [_rule_boxes(rule, version) for rule in run]
        for kind, index in (("p", 0), ("n", 1)):
            run_boxes = [box for rule_boxes in per_rule for box in rule_boxes[index]]
            if not run_boxes:
                continue
            pieces = disjoint(run_boxes)
            total += len(pieces)
            if total > MAX_RUN_ELEMENTS:
                return None
            set_name = f"{name}-{version}{kind}"
            fields = [address_type, address_type, "inet_proto"] + (["inet_service"] * 2 if kind == "p" else [])
            keys = [f"{family} saddr", f"{family} daddr", "meta l4proto"] + (
                ["th sport", "th dport"] if kind == "p" else []
            )
            texts = _V4_TEXTS if version == 4 else _V6_TEXTS
            elements = ", ".join(
                " . ".join((_address(box[0], texts), _address(box[1], texts), *map(_interval, box[2:])))
                for box in pieces
            )
            definition = (f"set {set_name} {{", f"type {' . '.join(fields)}", "flags interval",
                          f"elements = {{ {elements} }}", "}")  # fmt: skip
            out.append((f"{' . '.join(keys)} @{set_name}", definition))
    return tuple(out)


@lru_cache(maxsize=65536)
def _rule_boxes(rule: Rule, version: int) -> tuple[tuple[Box, ...], tuple[Box, ...]]:
    """The rule's (ported, plain) boxes in one address family: saddr . daddr . proto (. sport . dport)."""
    ported: list[Box] = []
    plain: list[Box] = []
    sources = [_span(p) for p in rule.source_prefixes if p.version == version]
    destinations = [_span(p) for p in rule.destination_prefixes if p.version == version]
    for source in sources:
        for destination in destinations:
            for protocols, with_ports in _protocols(rule.protocol, version, _restricted(rule)):
                if with_ports:
                    ported += [(source, destination, protocols, sp, dp)
                               for sp in rule.source_ports for dp in rule.destination_ports]  # fmt: skip
                else:
                    plain.append((source, destination, protocols))
    return tuple(ported), tuple(plain)


def clear_caches() -> None:
    """Forget every rendered run and rule (a benchmark's cold start)."""
    _run_sets.cache_clear()
    _rule_boxes.cache_clear()
    forget_slices()
    _V4_TEXTS.clear()
    _V6_TEXTS.clear()


def _restricted(rule: Rule) -> bool:
    return rule.source_ports != ALL_PORTS or rule.destination_ports != ALL_PORTS


def _protocols(protocol: str, version: int, ports: bool) -> list[tuple[tuple[int, int], bool]]:
    """(protocol interval, matched with ports?) pieces of a rule's protocol, as matches() reads it."""
    numbers = {"Tcp": 6, "Udp": 17, "Esp": 50, "Ah": 51, "Icmp": 1 if version == 4 else 58}
    if protocol in ("Tcp", "Udp"):
        return [((numbers[protocol],) * 2, True)]
    if protocol != "*":
        return [((numbers[protocol],) * 2, False)]
    if not ports:
        return [((0, 255), False)]
    return [((6, 6), True), ((17, 17), True), ((0, 5), False), ((7, 16), False), ((18, 255), False)]


def _span(network: Network) -> tuple[int, int]:
    return int(network.network_address), int(network.broadcast_address)


_V4_TEXTS: dict[tuple[int, int], str] = {}  # address intervals as text (elements repeat the same few)
_V6_TEXTS: dict[tuple[int, int], str] = {}


def _address(interval: tuple[int, int], texts: dict[tuple[int, int], str]) -> str:
    text = texts.get(interval)
    if text is None:
        if len(texts) > 65536:
            texts.clear()
        low, high = interval
        name = _v4 if texts is _V4_TEXTS else _v6
        text = texts[interval] = name(low) if low == high else f"{name(low)}-{name(high)}"
    return text


def _interval(interval: tuple[int, int]) -> str:
    low, high = interval
    return str(low) if low == high else f"{low}-{high}"


def _v4(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _v6(value: int) -> str:
    return str(IPv6Address(value))


def rule_lines(rule: Rule) -> list[str]:
    """One compiled rule as nft rules: one per address family it can match, and for protocol `*` with
    ports a TCP/UDP rule with the ports plus a rule for every other protocol without them."""
    verdict = "return" if rule.access == "Allow" else "drop"
    comment = f'comment "{rule.name[:100]}"'
    protocol = rule.protocol
    ports = _ports(rule)
    out = []
    for family, any_net in (("ip", "0.0.0.0/0"), ("ip6", "::/0")):
        version = 4 if family == "ip" else 6
        sources = [str(p) for p in rule.source_prefixes if p.version == version]
        destinations = [str(p) for p in rule.destination_prefixes if p.version == version]
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


def _ports(rule: Rule) -> str:
    if rule.protocol not in ("Tcp", "Udp", "*"):
        return ""
    parts = []
    for side, ranges in (("sport", rule.source_ports), ("dport", rule.destination_ports)):
        if ranges != ALL_PORTS:
            parts.append(f"th {side} {_set([f'{lo}-{hi}' if lo != hi else str(lo) for lo, hi in ranges])}")
    return " ".join(parts)


def _set(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
