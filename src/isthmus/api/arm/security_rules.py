"""Validation of an NSG's securityRules with Azure's error codes and the JSON path of the field at fault.

What passes is stored in the form of model/security_rules.py (`normalize_security_rule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from isthmus.model import limits
from isthmus.model.ids import RESOURCE_NAME
from isthmus.model.security_rules import ACCESS, DIRECTIONS, PROTOCOLS, TAGS, port_interval

RULE_FIELDS = {"name", "id", "type", "etag", "properties"}
PROPERTY_FIELDS = {
    "description", "protocol", "sourcePortRange", "destinationPortRange", "sourcePortRanges",
    "destinationPortRanges", "sourceAddressPrefix", "destinationAddressPrefix", "sourceAddressPrefixes",
    "destinationAddressPrefixes", "sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups",
    "access", "priority", "direction", "provisioningState",
}  # fmt: skip


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


def validate_security_rules(rules: Sequence[Any], target: str) -> RuleError | None:
    """The first problem in the rules of one NSG, or None. `target` is the JSON path of the list."""
    if len(rules) > limits.RULES_PER_NSG:
        return RuleError(
            "SecurityRulesPerNetworkSecurityGroupLimitReached",
            f"At most {limits.RULES_PER_NSG} security rules are allowed in a network security group; "
            f"the request has {len(rules)}.",
            target,
        )
    seen_names: dict[str, int] = {}
    seen_priorities: dict[tuple[str, int], str] = {}
    prefixes = {"source": 0, "destination": 0}
    for index, rule in enumerate(rules):
        where = f"{target}[{index}]"
        try:
            name, props = _check_rule(rule)
            for side in prefixes:
                prefixes[side] += _prefix_count(props, side)
                if prefixes[side] > limits.PREFIXES_PER_NSG_SIDE:
                    raise _Invalid(
                        "SecurityRuleAddressPrefixesLimitReached",
                        f"At most {limits.PREFIXES_PER_NSG_SIDE} {side} addresses and ranges are allowed over the "
                        "security rules of a network security group.",
                        f"properties.{side}AddressPrefixes",
                    )
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
    if not isinstance(name, str) or not RESOURCE_NAME.match(name):
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


def _prefix_count(props: Mapping[str, Any], side: str) -> int:
    many = props.get(f"{side}AddressPrefixes")
    return len(many) if many else 1


def _ports(props: Mapping[str, Any], side: str) -> None:
    field, values = _one_or_many(props, f"{side}PortRange", f"{side}PortRanges")
    if len(values) > limits.PORT_RANGES_PER_RULE:
        raise _Invalid(
            "SecurityRulePortRangesLimitReached",
            f"At most {limits.PORT_RANGES_PER_RULE} port ranges are allowed in {field} of a security rule.",
            f"properties.{field}",
        )
    for index, value in enumerate(values):
        if port_interval(value) is None:
            where = f"properties.{field}" + (f"[{index}]" if field.endswith("s") else "")
            raise _Invalid(
                "SecurityRuleInvalidPortRange",
                f"Security rule has invalid Port range. Value provided: {value}. Value should be an integer OR "
                "integer range with '-' delimiter. Valid range 0-65535.",
                where,
            )


def _addresses(props: Mapping[str, Any], side: str) -> None:
    field, values = _one_or_many(props, f"{side}AddressPrefix", f"{side}AddressPrefixes")
    plural = field.endswith("es")
    if len(values) > limits.PREFIXES_PER_NSG_SIDE:  # before parsing any of them
        raise _Invalid(
            "SecurityRuleAddressPrefixesLimitReached",
            f"At most {limits.PREFIXES_PER_NSG_SIDE} {side} addresses and ranges are allowed over the security "
            "rules of a network security group.",
            f"properties.{field}",
        )
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
