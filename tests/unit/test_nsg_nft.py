"""NSG programs as nftables text: the shape the kernel test relies on, checked without a kernel."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network
from typing import Any

from isthmus.linux.nsg_nft import Port, chain_body, render_filter, rule_lines
from isthmus.model.nsg import NsgProgram, Rule

ANY = (ip_network("0.0.0.0/0"), ip_network("::/0"))


def compiled(**overrides: Any) -> Rule:
    rule = Rule(name="r", default=False, priority=100, direction="Inbound", access="Deny", protocol="Tcp",
                source_prefixes=ANY, source_ports=((0, 65535),), destination_prefixes=ANY,
                destination_ports=((22, 22),))  # fmt: skip
    return replace(rule, **overrides)


def nets(*prefixes: str) -> tuple[Any, ...]:
    return tuple(ip_network(p) for p in prefixes)


def test_each_family_half_names_its_family() -> None:
    v4, v6 = rule_lines(compiled())
    assert v4.startswith("meta nfproto ipv4 ") and v6.startswith("meta nfproto ipv6 ")
    assert "th dport 22 drop" in v4


def test_a_family_with_no_prefix_on_one_side_is_left_out() -> None:
    lines = rule_lines(compiled(source_prefixes=nets("198.51.100.0/24"), access="Allow"))
    assert lines == ['ip saddr 198.51.100.0/24 meta l4proto tcp th dport 22 return comment "r"']


def test_any_protocol_with_ports_filters_tcp_udp_ports_and_passes_other_protocols_on_addresses() -> None:
    lines = rule_lines(
        compiled(protocol="*", source_prefixes=nets("100.64.0.0/16"), destination_prefixes=nets("100.64.0.0/16"))
    )
    assert lines == [
        'ip saddr 100.64.0.0/16 ip daddr 100.64.0.0/16 meta l4proto @ported th dport 22 drop comment "r"',
        'ip saddr 100.64.0.0/16 ip daddr 100.64.0.0/16 meta l4proto != @ported drop comment "r"',
    ]


def test_ports_dispatch_through_verdict_maps_in_azure_order() -> None:
    programs = {"n": NsgProgram((), ()), "s": NsgProgram((), ())}
    text = render_filter([Port("nab", "n", "s"), Port("ncd", None, "s")], programs)
    assert 'iifname vmap { "nab" : jump port-nab-out, "ncd" : jump port-ncd-out }' in text
    assert "chain port-nab-out {\njump nsg0-out\njump nsg1-out\n}" in text  # NIC (n) first on the way out
    assert "chain port-nab-in {\njump nsg1-in\njump nsg0-in\n}" in text  # subnet (s) first on the way in
    assert "chain port-ncd-in {\njump nsg1-in\n}" in text


def test_a_run_of_same_access_rules_is_one_lookup_of_disjoint_elements() -> None:
    rules = [compiled(name="a", source_prefixes=nets("198.51.100.0/24"), destination_ports=((20, 30),)),
             compiled(name="b", source_prefixes=nets("198.51.100.7/32"), destination_ports=((25, 40),)),
             compiled(name="c", access="Allow")]  # fmt: skip
    body, sets = chain_body("nsg0-in", rules)
    assert body[0] == ('ip saddr . ip daddr . meta l4proto . th sport . th dport @nsg0-in-run0-4p drop '
                       'comment "2 rules: a, b"')  # fmt: skip
    assert body[1:] == rule_lines(rules[2])  # a run of one stays a plain rule
    [elements] = [line for line in sets if line.startswith("elements")]
    assert elements == (
        "elements = { 198.51.100.0-198.51.100.6 . 0.0.0.0-255.255.255.255 . 6 . 0-65535 . 20-30, "
        "198.51.100.7 . 0.0.0.0-255.255.255.255 . 6 . 0-65535 . 20-40, "
        "198.51.100.8-198.51.100.255 . 0.0.0.0-255.255.255.255 . 6 . 0-65535 . 20-30 }"
    )
