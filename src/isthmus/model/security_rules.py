"""Security rules as the store holds them: written by the API (api/arm/security_rules.py validates first),
read by compile/. Azure's canonical spellings, the stored form of a valid rule, and the six default rules.

Pure: no I/O, and no API error codes (a rule reaching these functions has been validated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from isthmus.model.nsg import PortRange

PROTOCOLS = {p.lower(): p for p in ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")}
ACCESS = {a.lower(): a for a in ("Allow", "Deny")}
DIRECTIONS = {d.lower(): d for d in ("Inbound", "Outbound")}
TAGS = {t.lower(): t for t in ("VirtualNetwork", "Internet", "AzureLoadBalancer")}
PORTED = ("Tcp", "Udp")
_PORT_RANGE = re.compile(r"[0-9]{1,5}(-[0-9]{1,5})?")  # ASCII digits only: `\d` takes any script's

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


def port_interval(value: Any) -> PortRange | None:
    """A port range as written in a rule ("*", "80", "8000-8080", or an int), or None if it is not one."""
    if value == "*":
        return (0, 65535)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _PORT_RANGE.fullmatch(value):
        return None
    low, _, high = value.partition("-")
    interval = (int(low), int(high or low))
    return interval if interval[0] <= interval[1] <= 65535 else None


def given(props: Mapping[str, Any], single: str, plural: str) -> tuple[str, list[Any]]:
    """(field, values) of whichever of a singular/plural pair a valid rule gives."""
    many = props.get(plural)
    return (plural, list(many)) if many else (single, [props.get(single)])


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
        field, values = given(props, f"{side}PortRange", f"{side}PortRanges")
        if field.endswith("s"):
            out[field] = [str(v) for v in values]
        else:
            out[field] = str(values[0])
            out[f"{field}s"] = []
        field, values = given(props, f"{side}AddressPrefix", f"{side}AddressPrefixes")
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
