"""The kernel enforces exactly what IP flow verify predicts.

Hypothesis draws a subnet NSG and a NIC NSG (random rules over tags, prefixes, port ranges and lists)
and flows in both directions; the NSGs are loaded into a real router namespace as the host agent loads
them (linux/nsg_nft.py), one real packet per flow is sent between namespaces, and whether it crossed the
router (a confirmed conntrack entry there) must equal compile/'s verdict.

    peer netns (198.51.100.7, 203.0.113.9, …) ── np ─ router netns ─ nvm ── VM netns (100.64.1.4)
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isthmus.compile.security_rules import Flow, compile_nsg, resolve_prefix, verify_flow
from isthmus.lab.testbed import router_between
from isthmus.linux import nft
from isthmus.linux.nsg_nft import Port, render_filter
from isthmus.linux.run import in_netns, run
from isthmus.linux.sockets import socket_in
from isthmus.model.nsg import NsgContext
from isthmus.model.security_rules import port_interval
from isthmus.model.snapshot import FabricSettings
from tests.support import require_root
from tests.unit.test_security_rules import rule_sets

require_root()

VM = "100.64.1.4"
PEERS = ["100.64.200.1", "198.51.100.7", "203.0.113.9", "198.18.255.254", "192.0.2.1"]
CONTEXT = NsgContext((ip_network("100.64.0.0/16"),), FabricSettings().azure_load_balancer)
EXAMPLES = int(os.environ.get("ISTHMUS_KERNEL_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def netns() -> Iterator[dict[str, str]]:
    with router_between(f"nk{os.getpid() % 100000}", VM, PEERS) as names:
        for observer in (names["vm"], names["peer"]):
            run(in_netns(observer, ["nft", "-f", "-"]), stdin=OBSERVER)
        yield names


def send(netns: str, flow: Flow) -> None:
    """One packet of `flow`, from its source address and port, not waiting for any answer."""
    src, dst = str(flow.source_ip), str(flow.destination_ip)
    if flow.protocol == "Icmp":
        sock = socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        header = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1)
        sock.bind((src, 0))
        sock.sendto(struct.pack("!BBHHH", 8, 0, _checksum(header), 0x1234, 1), (dst, 0))
    else:
        kind = socket.SOCK_STREAM if flow.protocol == "Tcp" else socket.SOCK_DGRAM
        sock = socket_in(netns, socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((src, flow.source_port))
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((dst, flow.destination_port))
        else:
            sock.sendto(b"x", (dst, flow.destination_port))
    time.sleep(0.02)
    sock.close()


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


OBSERVER = """table inet observer {
counter seen {}
chain prerouting {
type filter hook prerouting priority raw; policy accept;
tcp flags & (syn | ack) == syn counter name seen
meta l4proto udp counter name seen
icmp type echo-request counter name seen
}
}
"""


def arrived(netns: str) -> bool:
    """Did a flow's first packet (SYN, datagram, echo request) reach `netns` since the last look?"""
    out = run(in_netns(netns, ["nft", "reset", "counter", "inet", "observer", "seen"]))
    packets = re.search(r"packets (\d+)", out)
    return bool(packets and int(packets.group(1)) > 0)


@st.composite
def long_runs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rule sets where most rules share one direction and access: long runs, loaded as set lookups."""
    rules = draw(rule_sets())
    direction = draw(st.sampled_from(["Inbound", "Outbound"]))
    access = draw(st.sampled_from(["Allow", "Deny"]))
    for rule in rules:
        if draw(st.integers(0, 4)):
            rule["properties"].update(direction=direction, access=access)
    return rules


nsgs = st.one_of(rule_sets(), long_runs())

flows = st.builds(
    lambda direction, protocol, peer, sport, dport: Flow(
        direction, protocol,
        ip_address(peer if direction == "Inbound" else VM), sport,
        ip_address(VM if direction == "Inbound" else peer), dport,
    ),
    st.sampled_from(["Inbound", "Outbound"]), st.sampled_from(["Tcp", "Udp", "Icmp"]), st.sampled_from(PEERS),
    st.sampled_from([22, 1500, 40000]), st.sampled_from([22, 80, 443, 1000, 2000, 2001, 8080]),
)  # fmt: skip


def aimed_at(rule: dict[str, Any], draw: st.DrawFn) -> Flow:
    """A flow inside `rule` where the address plan allows: the flows that tell a rule's set entries apart."""
    props = rule["properties"]
    protocol = props["protocol"] if props["protocol"] != "*" else draw(st.sampled_from(["Tcp", "Udp", "Icmp"]))
    inbound = props["direction"] == "Inbound"
    side = "source" if inbound else "destination"
    values = props.get(f"{side}AddressPrefixes") or [props[f"{side}AddressPrefix"]]
    inside = [p for p in PEERS if any(ip_address(p) in n for v in values for n in resolve_prefix(v, CONTEXT)
                                      if n.version == 4)]  # fmt: skip
    peer = draw(st.sampled_from(inside or PEERS))

    def port(field: str) -> int:
        ranges = props.get(f"{field}PortRanges") or [props[f"{field}PortRange"]]
        low, high = port_interval(draw(st.sampled_from(ranges))) or (1, 65535)
        return max(1, draw(st.sampled_from([low, high])))

    sport, dport = port("source"), port("destination")
    if inbound:
        return Flow("Inbound", protocol, ip_address(peer), sport, ip_address(VM), dport)
    return Flow("Outbound", protocol, ip_address(VM), sport, ip_address(peer), dport)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subnet_rules=nsgs, nic_rules=nsgs, random_flows=st.lists(flows, min_size=2, max_size=4), data=st.data())
def test_kernel_verdict_equals_flow_verify(
    netns: dict[str, str],
    subnet_rules: list[dict[str, Any]],
    nic_rules: list[dict[str, Any]],
    random_flows: list[Flow],
    data: st.DataObject,
) -> None:
    rules = subnet_rules + nic_rules
    aimed = [aimed_at(data.draw(st.sampled_from(rules)), data.draw) for _ in range(4)] if rules else []
    sample = random_flows + aimed
    subnet, nic = compile_nsg(subnet_rules, CONTEXT), compile_nsg(nic_rules, CONTEXT)
    programs = {"subnet": subnet, "nic": nic}
    nft.ensure_table(netns["router"], "inet", "isthmus", render_filter([Port("nvm", "nic", "subnet")], programs))
    for flow in sample:
        run(in_netns(netns["router"], ["conntrack", "-F"]), check=False)  # every flow is new to the router
        source, destination = ("peer", "vm") if flow.direction == "Inbound" else ("vm", "peer")
        arrived(netns[destination])
        send(netns[source], flow)
        verdict = verify_flow(flow, ("subnet", subnet), ("nic", nic))
        if arrived(netns[destination]) != (verdict.access == "Allow"):
            raise AssertionError(f"kernel disagrees with {verdict} on {flow}\nsubnet NSG {subnet_rules}\n"
                                 f"NIC NSG {nic_rules}\nflows {sample}")  # fmt: skip
