"""Network security groups with Azure's semantics: compilation of valid, stored rules to prefixes and port
intervals (model/nsg.py's `NsgProgram`), and IP flow verify (the verdict and its rule).

Pure: no I/O, no clock. The data plane loads `NsgProgram`s; `verify` answers what it should do. Validation
(and its API error codes) is api/arm/security_rules.py's; the stored form is model/security_rules.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, collapse_addresses, ip_network
from typing import Any

from isthmus.model.addresses import Network, parse_network
from isthmus.model.nsg import ALL_PORTS, NsgContext, NsgProgram, PortRange, Rule
from isthmus.model.security_rules import ACCESS, DEFAULT_RULES, DIRECTIONS, PORTED, PROTOCOLS, TAGS, port_interval

Address = IPv4Address | IPv6Address
ANY_V4, ANY_V6 = ip_network("0.0.0.0/0"), ip_network("::/0")


# --- compilation ------------------------------------------------------------------------------------


RuleKey = tuple[Any, ...]  # what of a rule its compiled form depends on, hashable
_CACHED_RULES = 16384  # per context


def compile_nsg(rules: Sequence[Mapping[str, Any]], context: NsgContext) -> NsgProgram:
    """Valid rules (the user's; the defaults are added here) as prefixes and port intervals.

    Memoised by content: the same rules again (a re-load, a snapshot that changed something else) cost
    their keys; an edited NSG compiles only the rules that changed."""
    return _program(tuple(_key(rule) for rule in rules), context)


def clear_caches() -> None:
    """Forget every compiled rule and program (a benchmark's cold start)."""
    for cache in (_program, _rules_in, _defaults, _resolved, parse_network):
        cache.cache_clear()


def _key(rule: Mapping[str, Any]) -> RuleKey:
    p = rule["properties"].get
    return (
        rule["name"], p("protocol"), p("access"), p("priority"), p("direction"),
        p("sourcePortRange"), _frozen(p("sourcePortRanges")), p("destinationPortRange"),
        _frozen(p("destinationPortRanges")), p("sourceAddressPrefix"), _frozen(p("sourceAddressPrefixes")),
        p("destinationAddressPrefix"), _frozen(p("destinationAddressPrefixes")),
    )  # fmt: skip


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@lru_cache(maxsize=64)
def _program(keys: tuple[RuleKey, ...], context: NsgContext) -> NsgProgram:
    compiled = _rules_in(context)
    if len(compiled) > _CACHED_RULES:
        compiled.clear()
    rules = []
    for key in keys:
        rule = compiled.get(key)
        if rule is None:
            rule = compiled[key] = _compile(key, context, default=False)
        rules.append(rule)
    ordered = sorted([*rules, *_defaults(context)], key=lambda r: (r.priority, r.name))
    return NsgProgram(
        inbound=tuple(r for r in ordered if r.direction == "Inbound"),
        outbound=tuple(r for r in ordered if r.direction == "Outbound"),
    )


@lru_cache(maxsize=64)
def _rules_in(context: NsgContext) -> dict[RuleKey, Rule]:
    """The rules compiled for `context` so far, by key."""
    return {}


@lru_cache(maxsize=64)
def _defaults(context: NsgContext) -> tuple[Rule, ...]:
    keys = [(name, "*", access, priority, direction, "*", (), "*", (), source, (), destination, ())
            for name, _description, source, destination, access, priority, direction in DEFAULT_RULES]  # fmt: skip
    return tuple(_compile(key, context, default=True) for key in keys)


def _compile(key: RuleKey, context: NsgContext, *, default: bool) -> Rule:
    """One valid rule (any case, either of the singular and plural forms) as prefixes and port intervals."""
    name, protocol, access, priority, direction, sport, sports, dport, dports, source, sources, dest, dests = key
    protocol = PROTOCOLS[protocol.lower()]
    ported = protocol in (*PORTED, "*")  # "*" rules filter the ports of TCP and UDP flows
    return Rule(
        name=name, default=default, priority=priority, direction=DIRECTIONS[direction.lower()],
        access=ACCESS[access.lower()], protocol=protocol,
        source_prefixes=_resolved(tuple(sources or (source,)), context),
        source_ports=_ports(sports or (sport,)) if ported else ALL_PORTS,
        destination_prefixes=_resolved(tuple(dests or (dest,)), context),
        destination_ports=_ports(dports or (dport,)) if ported else ALL_PORTS,
    )  # fmt: skip


def _ports(values: Sequence[Any]) -> tuple[PortRange, ...]:
    if len(values) == 1:
        return (port_interval(values[0]) or ALL_PORTS[0],)
    return merge_intervals(port_interval(v) or ALL_PORTS[0] for v in values)


@lru_cache(maxsize=16384)
def _resolved(values: tuple[str, ...], context: NsgContext) -> tuple[Network, ...]:
    """A rule side's prefixes and tags as collapsed networks (rules repeat the same few sides: cached)."""
    out: list[Network] = []
    for value in values:
        out.extend(resolve_prefix(value, context))
    return (out[0],) if len(out) == 1 else collapse(out)


def resolve_prefix(value: str, context: NsgContext) -> list[Network]:
    tag = TAGS.get(value.lower()) if value != "*" else "*"
    if tag == "*":
        return [ANY_V4, ANY_V6]
    if tag == "VirtualNetwork":
        return list(context.virtual_network)
    if tag == "AzureLoadBalancer":
        return list(context.azure_load_balancer)
    if tag == "Internet":
        return complement(context.virtual_network)
    return [parse_network(value)]


def complement(networks: Iterable[Network]) -> list[Network]:
    """Everything, in both families, outside `networks`."""
    out: list[Network] = []
    for universe in (ANY_V4, ANY_V6):
        pieces: list[Network] = [universe]
        for hole in collapse(n for n in networks if n.version == universe.version):
            next_pieces: list[Network] = []
            for piece in pieces:
                if hole.subnet_of(piece):  # type: ignore[arg-type]
                    next_pieces.extend(piece.address_exclude(hole))  # type: ignore[arg-type]
                elif not piece.subnet_of(hole):  # type: ignore[arg-type]
                    next_pieces.append(piece)
            pieces = next_pieces
        out.extend(pieces)
    return list(collapse(out))


def collapse(networks: Iterable[Network]) -> tuple[Network, ...]:
    items = list(networks)
    v4 = collapse_addresses([n for n in items if isinstance(n, IPv4Network)])
    v6 = collapse_addresses([n for n in items if isinstance(n, IPv6Network)])
    return (*v4, *v6)


def merge_intervals(intervals: Iterable[PortRange]) -> tuple[PortRange, ...]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


# --- IP flow verify --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    direction: str  # Inbound | Outbound, as seen from the NIC
    protocol: str  # Tcp | Udp | Icmp | Esp | Ah
    source_ip: Address
    source_port: int
    destination_ip: Address
    destination_port: int


@dataclass(frozen=True)
class Verdict:
    access: str  # Allow | Deny
    rule_name: str  # the deciding rule, e.g. securityRules/allow-ssh or defaultSecurityRules/DenyAllInBound
    nsg: str | None  # the NSG that decided; None when no NSG applies


def matches(rule: Rule, flow: Flow) -> bool:
    if rule.protocol != "*" and rule.protocol != flow.protocol:
        return False
    if not _in(flow.source_ip, rule.source_prefixes) or not _in(flow.destination_ip, rule.destination_prefixes):
        return False
    if flow.protocol in PORTED and rule.protocol in (*PORTED, "*"):
        return _port_in(flow.source_port, rule.source_ports) and _port_in(flow.destination_port, rule.destination_ports)
    return True


def _in(address: Address, prefixes: tuple[Network, ...]) -> bool:
    return any(address.version == p.version and address in p for p in prefixes)


def _port_in(port: int, intervals: tuple[PortRange, ...]) -> bool:
    return any(low <= port <= high for low, high in intervals)


def verify(program: NsgProgram, flow: Flow) -> tuple[str, str]:
    """(access, rule) of the first rule of `program` that matches `flow`; the defaults always end the list."""
    for rule in program.inbound if flow.direction == "Inbound" else program.outbound:
        if matches(rule, flow):
            return rule.access, rule.qualified_name
    return "Deny", "defaultSecurityRules/DenyAll"  # unreachable: the defaults match everything


def verify_flow(
    flow: Flow, subnet_nsg: tuple[str, NsgProgram] | None, nic_nsg: tuple[str, NsgProgram] | None
) -> Verdict:
    """Azure's order: inbound through the subnet's NSG then the NIC's, outbound through the NIC's then the
    subnet's. Every NSG present must allow; the first Deny decides; with all allowing, the last rule reports."""
    order = [subnet_nsg, nic_nsg] if flow.direction == "Inbound" else [nic_nsg, subnet_nsg]
    verdict = Verdict("Allow", "", None)
    for entry in order:
        if entry is None:
            continue
        nsg_id, program = entry
        access, rule = verify(program, flow)
        verdict = Verdict(access, rule, nsg_id)
        if access == "Deny":
            return verdict
    return verdict
