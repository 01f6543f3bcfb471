"""Network security group rules with Azure's semantics: validation, the stored form, the six default
rules, compilation to prefixes and port intervals, and IP flow verify (the verdict and its rule).

Pure: no I/O, no clock. The data plane loads `NsgProgram`s; `verify` answers what it should do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, collapse_addresses, ip_network
from typing import Any

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

PROTOCOLS = {p.lower(): p for p in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")}
ACCESS = {a.lower(): a for a in ("Allow", "Deny")}
DIRECTIONS = {d.lower(): d for d in ("Inbound", "Outbound")}
TAGS = {t.lower(): t for t in ("VirtualNetwork", "Internet", "AzureLoadBalancer")}
PORTED = ("Tcp", "Udp")
RULE_FIELDS = {"name", "id", "type", "etag", "properties"}
PROPERTY_FIELDS = {
    "description", "protocol", "sourcePortRange", "destinationPortRange", "sourcePortRanges",
    "destinationPortRanges", "sourceAddressPrefix", "destinationAddressPrefix", "sourceAddressPrefixes",
    "destinationAddressPrefixes", "sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups",
    "access", "priority", "direction", "provisioningState",
}  # fmt: skip
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,78}[A-Za-z0-9_])?$")
ANY_V4, ANY_V6 = ip_network("0.0.0.0/0"), ip_network("::/0")
ALL_PORTS = ((0, 65535),)

DEFAULT_RULES: tuple[tuple[str, str, str, str, str, int, str], ...] = (
    # name, description, source, destination, access, priority, direction
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "VirtualNetwork", "VirtualNetwork", "Allow",
     65000, "Inbound"),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", "AzureLoadBalancer", "*",
     "Allow", 65001, "Inbound"),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", "VirtualNetwork",
     "VirtualNetwork", "Allow", 65000, "Outbound"),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "*", "Internet", "Allow", 65001,
     "Outbound"),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
)  # fmt: skip


@dataclass(frozen=True)
class RuleError:
    """A 4xx the API returns: ARM error code, message, and the field it names."""

    code: str
    message: str
    target: str


class _Invalid(Exception):
    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.error = (code, message, field)


# --- validation and the stored form ------------------------------------------------------------------


def validate_security_rules(rules: Sequence[Any], target: str) -> RuleError | None:
    """The first problem in the rules of one NSG, or None. `target` is the JSON path of the list."""
    seen_names: dict[str, int] = {}
    seen_priorities: dict[tuple[str, int], str] = {}
    for index, rule in enumerate(rules):
        where = f"{target}[{index}]"
        try:
            name, props = _check_rule(rule)
        except _Invalid as invalid:
            code, message, field = invalid.error
            return RuleError(code, message, f"{where}.{field}" if field else where)
        if name.lower() in seen_names:
            return RuleError("DuplicateResourceName", f"Security rule name '{name}' is used twice.", f"{where}.name")
        seen_names[name.lower()] = index
        key = (DIRECTIONS[props["direction"].lower()], props["priority"])
        if key in seen_priorities:
            return RuleError(
                "SecurityRuleConflict",
                f"Security rule {seen_priorities[key]} conflicts with rule {name}. "
                "Rules cannot have the same Priority and Direction.",
                f"{where}.properties.priority",
            )
        seen_priorities[key] = name
    return None


def _check_rule(rule: Any) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(rule, Mapping):
        raise _Invalid("InvalidRequestFormat", "A security rule is an object.", "")
    for field in rule:
        if field not in RULE_FIELDS:
            raise _Invalid("InvalidRequestFormat", f"Unknown field '{field}' in a security rule.", str(field))
    name = rule.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _Invalid("InvalidResourceName", f"Security rule name '{name}' is not valid (1-80 characters).", "name")
    props = rule.get("properties")
    if not isinstance(props, Mapping):
        raise _Invalid("InvalidRequestFormat", f"Security rule {name} needs properties.", "properties")
    for field in props:
        if field not in PROPERTY_FIELDS:
            raise _Invalid("InvalidRequestFormat", f"Unknown field '{field}' in security rule {name}.",
                           f"properties.{field}")  # fmt: skip
    _enum(props, "protocol", PROTOCOLS)
    _enum(props, "access", ACCESS)
    _enum(props, "direction", DIRECTIONS)
    priority = props.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 100 <= priority <= 4096:
        raise _Invalid(
            "SecurityRuleInvalidPriority",
            f"Security rule has invalid Priority. Value provided: {priority} Allowed range 100-4096.",
            "properties.priority",
        )
    description = props.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        raise _Invalid("InvalidRequestFormat", "description is a string of at most 140 characters.",
                       "properties.description")  # fmt: skip
    for side in ("source", "destination"):
        groups = props.get(f"{side}ApplicationSecurityGroups")
        if groups:
            raise _Invalid("FeatureNotSupported", "Application security groups are not supported.",
                           f"properties.{side}ApplicationSecurityGroups")  # fmt: skip
        _ports(props, side)
        _addresses(props, side)
    return name, props


def _enum(props: Mapping[str, Any], field: str, allowed: Mapping[str, str]) -> str:
    value = props.get(field)
    if not isinstance(value, str) or value.lower() not in allowed:
        raise _Invalid("InvalidRequestFormat", f"{field} must be one of {', '.join(allowed.values())}.",
                       f"properties.{field}")  # fmt: skip
    return allowed[value.lower()]


def _one_or_many(props: Mapping[str, Any], single: str, plural: str) -> tuple[str, list[Any]]:
    """(field, values) of whichever of a singular/plural pair is given; exactly one must be."""
    one, many = props.get(single), props.get(plural)
    if one in (None, "") and not many:
        raise _Invalid("InvalidRequestFormat", f"Give {single} or {plural}.", f"properties.{single}")
    if one not in (None, "") and many:
        raise _Invalid("InvalidRequestFormat", f"Give {single} or {plural}, not both.", f"properties.{plural}")
    if many:
        if not isinstance(many, list):
            raise _Invalid("InvalidRequestFormat", f"{plural} is a list.", f"properties.{plural}")
        return plural, many
    return single, [one]


def _ports(props: Mapping[str, Any], side: str) -> list[tuple[int, int]]:
    field, values = _one_or_many(props, f"{side}PortRange", f"{side}PortRanges")
    out = []
    for index, value in enumerate(values):
        interval = port_interval(value)
        if interval is None:
            where = f"properties.{field}" + (f"[{index}]" if field.endswith("s") else "")
            raise _Invalid(
                "SecurityRuleInvalidPortRange",
                f"Security rule has invalid Port range. Value provided: {value}. Value should be an integer OR "
                "integer range with '-' delimiter. Valid range 0-65535.",
                where,
            )
        out.append(interval)
    return out


def port_interval(value: Any) -> tuple[int, int] | None:
    if value == "*":
        return ALL_PORTS[0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,5}(-\d{1,5})?", value):
        return None
    low, _, high = value.partition("-")
    interval = (int(low), int(high or low))
    return interval if interval[0] <= interval[1] <= 65535 else None


def _addresses(props: Mapping[str, Any], side: str) -> None:
    field, values = _one_or_many(props, f"{side}AddressPrefix", f"{side}AddressPrefixes")
    plural = field.endswith("es")
    for index, value in enumerate(values):
        if not plural and isinstance(value, str) and (value == "*" or value.lower() in TAGS):
            continue
        try:
            ip_network(value, strict=True)
        except (ValueError, TypeError):
            where = f"properties.{field}" + (f"[{index}]" if plural else "")
            raise _Invalid(
                "SecurityRuleInvalidAddressPrefix",
                f"Security rule has invalid Address prefix. Value provided: {value}",
                where,
            ) from None


def normalize_security_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """The stored (and returned) form of a valid rule: canonical case, Azure's empty singular/plural forms."""
    props = rule["properties"]
    out: dict[str, Any] = {
        "protocol": PROTOCOLS[props["protocol"].lower()],
        "access": ACCESS[props["access"].lower()],
        "priority": props["priority"],
        "direction": DIRECTIONS[props["direction"].lower()],
    }
    if props.get("description"):
        out["description"] = props["description"]
    for side in ("source", "destination"):
        field, values = _one_or_many(props, f"{side}PortRange", f"{side}PortRanges")
        if field.endswith("s"):
            out[field] = [str(v) for v in values]
        else:
            out[field] = str(values[0])
            out[f"{field}s"] = []
        field, values = _one_or_many(props, f"{side}AddressPrefix", f"{side}AddressPrefixes")
        if field.endswith("es"):
            out[field] = [str(v) for v in values]
        else:
            value = values[0]
            out[field] = TAGS.get(value.lower(), value) if isinstance(value, str) else value
            out[f"{field}es"] = []
    return {"name": rule["name"], "properties": out}


def default_security_rules(nsg_id: str) -> list[dict[str, Any]]:
    """Azure's six default rules, as a GET of an NSG returns them."""
    return [
        {
            "id": f"{nsg_id}/defaultSecurityRules/{name}",
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "description": description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": source,
                "destinationAddressPrefix": destination,
                "access": access,
                "priority": priority,
                "direction": direction,
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "sourceAddressPrefixes": [],
                "destinationAddressPrefixes": [],
                "provisioningState": "Succeeded",
            },
        }
        for name, description, source, destination, access, priority, direction in DEFAULT_RULES
    ]


# --- compilation ------------------------------------------------------------------------------------


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
    direction: str
    access: str
    protocol: str
    source_prefixes: tuple[Network, ...]
    source_ports: tuple[tuple[int, int], ...]
    destination_prefixes: tuple[Network, ...]
    destination_ports: tuple[tuple[int, int], ...]

    @property
    def qualified_name(self) -> str:
        return f"{'defaultSecurityRules' if self.default else 'securityRules'}/{self.name}"


@dataclass(frozen=True)
class NsgProgram:
    inbound: tuple[Rule, ...]  # user rules, then the defaults, by priority: the first match decides
    outbound: tuple[Rule, ...]


def compile_nsg(rules: Sequence[Mapping[str, Any]], context: NsgContext) -> NsgProgram:
    """Valid rules (the user's; the defaults are added here) as prefixes and port intervals."""
    compiled = [_compile(normalize_security_rule(rule), context, default=False) for rule in rules]
    compiled += [_compile(rule, context, default=True) for rule in default_security_rules("")]
    ordered = sorted(compiled, key=lambda r: (r.priority, r.name))
    return NsgProgram(
        inbound=tuple(r for r in ordered if r.direction == "Inbound"),
        outbound=tuple(r for r in ordered if r.direction == "Outbound"),
    )


def _compile(rule: Mapping[str, Any], context: NsgContext, *, default: bool) -> Rule:
    props = rule["properties"]
    ported = props["protocol"] in (*PORTED, "*")  # "*" rules filter the ports of TCP and UDP flows

    def ports(side: str) -> tuple[tuple[int, int], ...]:
        if not ported:
            return ALL_PORTS
        values = props.get(f"{side}PortRanges") or [props[f"{side}PortRange"]]
        return merge_intervals(port_interval(v) or ALL_PORTS[0] for v in values)

    def prefixes(side: str) -> tuple[Network, ...]:
        return _resolved(tuple(props.get(f"{side}AddressPrefixes") or [props[f"{side}AddressPrefix"]]), context)

    return Rule(
        name=rule["name"], default=default, priority=props["priority"], direction=props["direction"],
        access=props["access"], protocol=props["protocol"],
        source_prefixes=prefixes("source"), source_ports=ports("source"),
        destination_prefixes=prefixes("destination"), destination_ports=ports("destination"),
    )  # fmt: skip


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
    return [ip_network(value, strict=True)]


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


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
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


def _port_in(port: int, intervals: tuple[tuple[int, int], ...]) -> bool:
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
