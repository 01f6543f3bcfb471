"""NSG rules with Azure's semantics: validation codes and targets, defaults, order, tags, flow verify.

The property tests compare `verify` with a deliberately naive evaluator that reads the ARM JSON directly.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.api.arm.security_rules import validate_security_rules
from isthmus.compile.security_rules import Flow, compile_nsg, complement, verify, verify_flow
from isthmus.model.nsg import NsgContext
from isthmus.model.security_rules import default_security_rules, normalize_security_rule

CONTEXT = NsgContext((ip_network("100.64.0.0/16"), ip_network("2001:db8:64::/48")), (ip_network("198.18.255.254/32"),))


def rule(name: str = "r", **props: Any) -> dict[str, Any]:
    base = {
        "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*", "access": "Allow", "priority": 100, "direction": "Inbound",
    }  # fmt: skip
    base.update(props)
    return {"name": name, "properties": {k: v for k, v in base.items() if v is not None}}


def flow(src: str, dst: str, dport: int = 22, protocol: str = "Tcp", direction: str = "Inbound") -> Flow:
    return Flow(direction, protocol, ip_address(src), 40000, ip_address(dst), dport)


@pytest.mark.parametrize(
    ("rules", "code", "target"),
    [
        ([rule(priority=99)], "SecurityRuleInvalidPriority", "p[0].properties.priority"),
        ([rule(priority=4097)], "SecurityRuleInvalidPriority", "p[0].properties.priority"),
        ([rule(priority="100")], "SecurityRuleInvalidPriority", "p[0].properties.priority"),
        ([rule("a"), rule("b")], "SecurityRuleConflict", "p[1].properties.priority"),
        ([rule("a"), rule("A", priority=200)], "DuplicateResourceName", "p[1].name"),
        ([rule(destinationPortRange="70000")], "SecurityRuleInvalidPortRange", "p[0].properties.destinationPortRange"),
        ([rule(destinationPortRange="90-80")], "SecurityRuleInvalidPortRange", "p[0].properties.destinationPortRange"),
        ([rule(destinationPortRange=None, destinationPortRanges=["80", "x"])], "SecurityRuleInvalidPortRange",
         "p[0].properties.destinationPortRanges[1]"),
        ([rule(sourceAddressPrefix="100.64.1.1/16")], "SecurityRuleInvalidAddressPrefix",
         "p[0].properties.sourceAddressPrefix"),
        ([rule(sourceAddressPrefix=None, sourceAddressPrefixes=["Internet"])], "SecurityRuleInvalidAddressPrefix",
         "p[0].properties.sourceAddressPrefixes[0]"),
        ([rule(sourceAddressPrefixes=["198.51.100.0/24"])], "InvalidRequestFormat",
         "p[0].properties.sourceAddressPrefixes"),
        ([rule(destinationPortRange=None)], "InvalidRequestFormat", "p[0].properties.destinationPortRange"),
        ([rule(protocol="Sctp")], "InvalidRequestFormat", "p[0].properties.protocol"),
        ([rule(access="Maybe")], "InvalidRequestFormat", "p[0].properties.access"),
        ([rule(direction="Sideways")], "InvalidRequestFormat", "p[0].properties.direction"),
        ([rule(colour="blue")], "InvalidRequestFormat", "p[0].properties.colour"),
        ([rule("bad name!")], "InvalidResourceName", "p[0].name"),
        ([{"name": "x"}], "InvalidRequestFormat", "p[0].properties"),
        ([rule(sourceApplicationSecurityGroups=[{"id": "x"}])], "FeatureNotSupported",
         "p[0].properties.sourceApplicationSecurityGroups"),
    ],
)  # fmt: skip
def test_validation_names_the_field(rules: list[dict[str, Any]], code: str, target: str) -> None:
    error = validate_security_rules(rules, "p")
    assert error is not None and (error.code, error.target) == (code, target), error


def test_valid_rules_pass_and_round_trip() -> None:
    rules = [
        rule("ssh", protocol="tcp", access="allow", direction="inbound"),
        rule("web", priority=110, destinationPortRange=None, destinationPortRanges=["80", "443", "8000-8080"],
             sourceAddressPrefix=None, sourceAddressPrefixes=["198.51.100.0/24", "2001:db8::/32"]),
        rule("same-priority-other-direction", direction="Outbound", destinationAddressPrefix="internet"),
    ]  # fmt: skip
    assert validate_security_rules(rules, "p") is None
    stored = [normalize_security_rule(r) for r in rules]
    assert stored[0]["properties"]["protocol"] == "Tcp" and stored[0]["properties"]["sourcePortRanges"] == []
    assert stored[2]["properties"]["destinationAddressPrefix"] == "Internet"
    assert validate_security_rules(stored, "p") is None  # what a GET returns can be PUT back
    assert [normalize_security_rule(r) for r in stored] == stored


def test_defaults_are_azures() -> None:
    defaults = {r["name"]: r["properties"] for r in default_security_rules("/nsg")}
    assert defaults["AllowVnetInBound"]["sourceAddressPrefix"] == "VirtualNetwork"
    assert defaults["AllowAzureLoadBalancerInBound"]["sourceAddressPrefix"] == "AzureLoadBalancer"
    assert defaults["AllowInternetOutBound"]["destinationAddressPrefix"] == "Internet"
    assert {(r["priority"], r["direction"], r["access"]) for r in defaults.values()} == {
        (65000, "Inbound", "Allow"), (65001, "Inbound", "Allow"), (65500, "Inbound", "Deny"),
        (65000, "Outbound", "Allow"), (65001, "Outbound", "Allow"), (65500, "Outbound", "Deny"),
    }  # fmt: skip


def test_first_match_by_priority_and_defaults() -> None:
    program = compile_nsg([rule("deny-ssh", access="Deny", priority=200), rule("allow-ssh", priority=150)], CONTEXT)
    assert verify(program, flow("198.51.100.7", "100.64.1.4")) == ("Allow", "securityRules/allow-ssh")
    assert verify(program, flow("198.51.100.7", "100.64.1.4", 23)) == ("Deny", "defaultSecurityRules/DenyAllInBound")
    assert verify(program, flow("100.64.2.9", "100.64.1.4", 23)) == ("Allow", "defaultSecurityRules/AllowVnetInBound")
    assert verify(program, flow("198.18.255.254", "100.64.1.4", 80)) == (
        "Allow", "defaultSecurityRules/AllowAzureLoadBalancerInBound")  # fmt: skip
    out = flow("100.64.1.4", "198.51.100.7", 443, direction="Outbound")
    assert verify(program, out) == ("Allow", "defaultSecurityRules/AllowInternetOutBound")


def test_icmp_rules_ignore_ports_and_tcp_rules_ignore_icmp() -> None:
    program = compile_nsg([rule("ping", protocol="Icmp", destinationPortRange="1")], CONTEXT)
    assert verify(program, flow("198.51.100.7", "100.64.1.4", 0, "Icmp")) == ("Allow", "securityRules/ping")
    program = compile_nsg([rule("tcp-any", destinationPortRange="*")], CONTEXT)
    assert verify(program, flow("198.51.100.7", "100.64.1.4", 0, "Icmp"))[0] == "Deny"


def test_internet_tag_is_everything_outside_the_vnet() -> None:
    outside = complement(CONTEXT.virtual_network)
    assert not any(p.overlaps(ip_network("100.64.0.0/16")) for p in outside if p.version == 4)
    program = compile_nsg(
        [rule("from-internet", sourceAddressPrefix="Internet", access="Deny", priority=4000)], CONTEXT
    )
    assert verify(program, flow("198.51.100.7", "100.64.1.4"))[1] == "securityRules/from-internet"
    assert verify(program, flow("100.64.9.9", "100.64.1.4"))[1] == "defaultSecurityRules/AllowVnetInBound"


def test_subnet_and_nic_order() -> None:
    allow = ("subnet-nsg", compile_nsg([rule("allow", destinationPortRange="*")], CONTEXT))
    deny = ("nic-nsg", compile_nsg([rule("deny", access="Deny", destinationPortRange="*")], CONTEXT))
    inbound = flow("198.51.100.7", "100.64.1.4")
    assert verify_flow(inbound, allow, deny).nsg == "nic-nsg"
    assert verify_flow(inbound, deny, allow).rule_name == "securityRules/deny"
    outbound = flow("100.64.1.4", "198.51.100.7", direction="Outbound")
    assert verify_flow(outbound, None, None).access == "Allow"
    assert verify_flow(outbound, None, allow).nsg == "subnet-nsg"


# --- property: the compiled program agrees with a naive reading of the ARM JSON -------------------------

ADDRESSES = ["100.64.1.4", "100.64.200.1", "198.51.100.7", "203.0.113.9", "198.18.255.254", "192.0.2.1"]
PREFIXES = ["*", "Internet", "VirtualNetwork", "AzureLoadBalancer", "100.64.1.0/24", "198.51.100.0/24",
            "203.0.113.8/29", "192.0.2.1/32"]  # fmt: skip
PORTS = ["*", "22", "80", "443", "1000-2000", "0-1023"]


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 8))
    priorities = draw(st.lists(st.integers(100, 4096), min_size=count, max_size=count, unique=True))
    rules = []
    for index, priority in enumerate(priorities):
        props: dict[str, Any] = {
            "protocol": draw(st.sampled_from(["Tcp", "Udp", "Icmp", "*"])),
            "access": draw(st.sampled_from(["Allow", "Deny"])),
            "direction": draw(st.sampled_from(["Inbound", "Outbound"])),
            "priority": priority,
            "sourcePortRange": draw(st.sampled_from(PORTS)),
        }
        if draw(st.booleans()):
            props["destinationPortRange"] = draw(st.sampled_from(PORTS))
        else:
            props["destinationPortRanges"] = draw(st.lists(st.sampled_from(PORTS[1:]), min_size=1, max_size=3))
        for side in ("source", "destination"):
            if draw(st.booleans()):
                props[f"{side}AddressPrefix"] = draw(st.sampled_from(PREFIXES))
            else:
                props[f"{side}AddressPrefixes"] = draw(st.lists(st.sampled_from(PREFIXES[4:]), min_size=1, max_size=3))
        rules.append({"name": f"r{index}", "properties": props})
    return rules


def naive(rules: list[dict[str, Any]], f: Flow) -> tuple[str, str]:
    def in_prefix(value: str, address: str) -> bool:
        a = ip_address(address)
        if value == "*":
            return True
        if value == "VirtualNetwork":
            return any(a in n for n in CONTEXT.virtual_network if n.version == a.version)
        if value == "AzureLoadBalancer":
            return any(a in n for n in CONTEXT.azure_load_balancer if n.version == a.version)
        if value == "Internet":
            return not any(a in n for n in CONTEXT.virtual_network if n.version == a.version)
        return a in ip_network(value)

    def in_ports(value: str, port: int) -> bool:
        if value == "*":
            return True
        low, _, high = value.partition("-")
        return int(low) <= port <= int(high or low)

    everything = [(r, "securityRules") for r in rules] + [
        (r, "defaultSecurityRules") for r in default_security_rules("")
    ]
    for r, kind in sorted(everything, key=lambda e: e[0]["properties"]["priority"]):
        p = r["properties"]
        if p["direction"] != f.direction or p["protocol"] not in ("*", f.protocol):
            continue
        if not any(
            in_prefix(v, str(f.source_ip)) for v in p.get("sourceAddressPrefixes") or [p["sourceAddressPrefix"]]
        ):
            continue
        if not any(in_prefix(v, str(f.destination_ip))
                   for v in p.get("destinationAddressPrefixes") or [p["destinationAddressPrefix"]]):  # fmt: skip
            continue
        if f.protocol in ("Tcp", "Udp") and p["protocol"] in ("Tcp", "Udp", "*"):
            if not any(in_ports(v, f.source_port) for v in p.get("sourcePortRanges") or [p["sourcePortRange"]]):
                continue
            if not any(in_ports(v, f.destination_port)
                       for v in p.get("destinationPortRanges") or [p["destinationPortRange"]]):  # fmt: skip
                continue
        return p["access"], f"{kind}/{r['name']}"
    raise AssertionError("the defaults match everything")


flows = st.builds(
    Flow,
    direction=st.sampled_from(["Inbound", "Outbound"]),
    protocol=st.sampled_from(["Tcp", "Udp", "Icmp"]),
    source_ip=st.sampled_from(ADDRESSES).map(ip_address),
    source_port=st.sampled_from([0, 22, 1500, 40000]),
    destination_ip=st.sampled_from(ADDRESSES).map(ip_address),
    destination_port=st.sampled_from([0, 22, 80, 443, 1000, 2000, 2001, 8080]),
)


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), f=flows)
def test_verify_equals_naive_reading(rules: list[dict[str, Any]], f: Flow) -> None:
    assert validate_security_rules(rules, "p") is None
    assert verify(compile_nsg(rules, CONTEXT), f) == naive(rules, f)


@settings(max_examples=50, deadline=None)
@given(rules=rule_sets())
def test_compile_is_deterministic(rules: list[dict[str, Any]]) -> None:
    assert compile_nsg(rules, CONTEXT) == compile_nsg(list(rules), CONTEXT)
