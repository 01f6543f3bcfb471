"""A tenant cannot make the controller do unbounded work: lists are capped at Azure's limits (with Azure's
kind of error, nothing written), prefix checks are O(n log n), and reserved ranges and non-ASCII digits are
refused. Each test first sends the request that used to be accepted (or took seconds)."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest

from isthmus.model import limits
from tests.conftest import Controller, net, vnet_body

VNET = net("virtualNetworks", "v")
NSG = net("networkSecurityGroups", "nsg")
BASE = int(ip_network("100.64.0.0/10").network_address)


def prefixes(count: int, length: int = 24) -> list[str]:
    size = 2 ** (32 - length)
    return [str(ip_network((BASE + i * size, length))) for i in range(count)]


def largest_vnet() -> dict[str, Any]:
    """The largest VNet the controller takes: the most address prefixes and the most subnets."""
    space = prefixes(limits.ADDRESS_PREFIXES_PER_VNET)
    subnets = {
        f"s{i}": str(ip_network((BASE + (i // 32) * 256 + (i % 32) * 8, 29))) for i in range(limits.SUBNETS_PER_VNET)
    }
    return vnet_body(*space, subnets=subnets)


def refused(controller: Controller, path: str, body: Any, code: str, target: str | None = None) -> None:
    before = controller.dump()
    response = controller.call("PUT", path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if target is not None:
        assert error["target"] == target
    assert controller.dump() == before


def test_too_many_address_prefixes(seeded: Controller) -> None:
    body = vnet_body(*prefixes(limits.ADDRESS_PREFIXES_PER_VNET + 1))
    refused(
        seeded, VNET, body, "AddressPrefixesPerVirtualNetworkLimitReached", "properties.addressSpace.addressPrefixes"
    )


def test_too_many_subnets(seeded: Controller) -> None:
    body = vnet_body(
        "100.64.0.0/10", subnets={f"s{i}": p for i, p in enumerate(prefixes(limits.SUBNETS_PER_VNET + 1, 29))}
    )
    refused(seeded, VNET, body, "SubnetsPerVirtualNetworkLimitReached", "properties.subnets")


def test_too_many_dns_servers(seeded: Controller) -> None:
    body = vnet_body("100.64.0.0/16")
    body["properties"]["dhcpOptions"] = {
        "dnsServers": [f"100.64.0.{i}" for i in range(1, limits.DNS_SERVERS_PER_VNET + 2)]
    }
    refused(seeded, VNET, body, "DnsServersPerVirtualNetworkLimitReached")


def test_the_largest_vnet_is_taken_and_read_back(seeded: Controller) -> None:
    response = seeded.call("PUT", VNET, largest_vnet())
    assert response.status_code == 201, response.text[:300]
    got = seeded.call("GET", VNET).json()
    assert len(got["properties"]["subnets"]) == limits.SUBNETS_PER_VNET
    assert len(got["properties"]["addressSpace"]["addressPrefixes"]) == limits.ADDRESS_PREFIXES_PER_VNET


def test_overlapping_subnets_found_among_many(seeded: Controller) -> None:
    subnets = {f"s{i}": p for i, p in enumerate(prefixes(2000, 29))}
    subnets["late"] = "100.64.0.8/29"  # the same range as s1
    refused(seeded, VNET, vnet_body("100.64.0.0/10", subnets=subnets), "NetcfgSubnetRangesOverlap",
            "properties.subnets[2000].properties.addressPrefix")  # fmt: skip


def test_overlapping_address_space_found_among_many(seeded: Controller) -> None:
    space = [*prefixes(400), "100.64.3.128/25"]
    refused(seeded, VNET, vnet_body(*space), "VnetAddressSpacesOverlap", "properties.addressSpace.addressPrefixes[400]")


@pytest.mark.parametrize(
    "prefix",
    ["0.0.0.0/0", "::/0", "127.0.0.0/8", "224.0.0.0/4", "169.254.0.0/16", "255.255.255.255/32", "168.63.129.16/32",
     "168.63.128.0/17", "fe80::/64", "ff02::/16"],
)  # fmt: skip
def test_reserved_ranges_refused(seeded: Controller, prefix: str) -> None:
    refused(seeded, VNET, vnet_body("100.64.0.0/16", prefix), "VnetAddressSpaceInReservedRange",
            "properties.addressSpace.addressPrefixes[1]")  # fmt: skip


def rule(name: str, priority: int, **overrides: Any) -> dict[str, Any]:
    props = {
        "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*", "access": "Allow", "priority": priority, "direction": "Inbound",
    }  # fmt: skip
    props.update(overrides)
    return {"name": name, "properties": props}


def nsg(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"location": "local", "properties": {"securityRules": list(rules)}}


def test_too_many_rules(seeded: Controller) -> None:
    rules = [rule(f"r{i}", 100 + i % 3997, direction="Inbound" if i < 3997 else "Outbound") for i in range(1001)]
    refused(seeded, NSG, nsg(*rules), "SecurityRulesPerNetworkSecurityGroupLimitReached", "properties.securityRules")


def test_huge_prefix_list_refused_before_parsing(seeded: Controller) -> None:
    many = [f"198.18.{i // 256 % 256}.{i % 256}/32" for i in range(150_000)]
    body = nsg(rule("r", 100, sourceAddressPrefix=None, sourceAddressPrefixes=many))
    refused(seeded, NSG, body, "SecurityRuleAddressPrefixesLimitReached",
            "properties.securityRules[0].properties.sourceAddressPrefixes")  # fmt: skip


def test_prefixes_counted_over_the_whole_nsg(seeded: Controller) -> None:
    half = [f"198.18.{i // 256}.{i % 256}/32" for i in range(limits.PREFIXES_PER_NSG_SIDE // 2 + 1)]
    body = nsg(
        *(rule(f"r{i}", 100 + i, destinationAddressPrefix=None, destinationAddressPrefixes=half) for i in range(2))
    )
    refused(seeded, NSG, body, "SecurityRuleAddressPrefixesLimitReached",
            "properties.securityRules[1].properties.destinationAddressPrefixes")  # fmt: skip


def test_too_many_port_ranges(seeded: Controller) -> None:
    ports = [str(p) for p in range(1, limits.PORT_RANGES_PER_RULE + 2)]
    body = nsg(rule("r", 100, destinationPortRange=None, destinationPortRanges=ports))
    refused(seeded, NSG, body, "SecurityRulePortRangesLimitReached",
            "properties.securityRules[0].properties.destinationPortRanges")  # fmt: skip


@pytest.mark.parametrize("port", ["٨٠", "\uff18\uff10", "80-٩٠"])
def test_ports_take_ascii_digits_only(seeded: Controller, port: str) -> None:
    refused(seeded, NSG, nsg(rule("r", 100, destinationPortRange=port)), "SecurityRuleInvalidPortRange")
