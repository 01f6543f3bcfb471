"""Desired-state documents: typed on both sides, one wire form, deltas that take one document to the next."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from isthmus.compile.security_rules import NsgContext, compile_nsg
from isthmus.model.documents import (
    BgpIdentity,
    BgpPeer,
    Compartment,
    Connection,
    GatewayDocument,
    GreSettings,
    HostDocument,
    IpConfiguration,
    MuxDocument,
    NetworkInterface,
    SecurityProgram,
    Subnet,
    Vip,
    VirtualNetwork,
    apply_delta,
    decode_deltas,
    decode_document,
    encode,
    host_delta,
    mux_delta,
    receive,
)

VNET = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/v"


def nic(index: int, public: str | None = None) -> NetworkInterface:
    config = IpConfiguration("c", f"{VNET}/subnets/a", ip_address(f"100.64.1.{index}"),
                             ip_address(public) if public else None, True)  # fmt: skip
    return NetworkInterface(f"{VNET}-nic{index}", f"00-0D-3A-00-00-{index:02X}", (config,), None, VNET, f"vm{index}")


def host_document(nics: tuple[NetworkInterface, ...], revision: int = 3) -> HostDocument:
    subnet = Subnet(f"{VNET}/subnets/a", "a", (ip_network("100.64.1.0/24"),), (ip_address("100.64.1.1"),), "nsg")
    vnet = VirtualNetwork(VNET, 4096, (ip_network("100.64.0.0/16"),), (subnet,), "02:00:00:00:00:01", ())
    rules = [{"name": "ssh", "properties": {"priority": 100, "direction": "Inbound", "access": "Allow",
              "protocol": "Tcp", "sourceAddressPrefix": "198.51.100.0/24", "sourcePortRange": "*",
              "destinationAddressPrefix": "*", "destinationPortRange": "22"}}]  # fmt: skip
    program = compile_nsg(rules, NsgContext((ip_network("100.64.0.0/16"),), (ip_network("198.18.255.254/32"),)))
    return HostDocument("h1", revision, ip_address("198.18.0.101"), ip_address("203.0.113.9"), (vnet,), nics,
                        (SecurityProgram("nsg", VNET, program),))  # fmt: skip


def test_a_host_document_survives_the_wire_with_its_types_and_arm_names() -> None:
    doc = host_document((nic(4, "203.0.113.20"), nic(5)))
    wire = json.loads(encode(doc))
    assert wire["role"] == "host" and wire["outboundNatAddress"] == "203.0.113.9"
    assert wire["networkInterfaces"][0]["ipConfigurations"][0]["publicIPAddress"] == "203.0.113.20"
    back = decode_document(encode(doc))
    assert back == doc
    assert isinstance(back, HostDocument)
    assert isinstance(back.network_interfaces[0].ip_configurations[0].private_ip_address, IPv4Address)
    assert back.network_security_groups[0].program == doc.network_security_groups[0].program


def test_a_mux_and_a_gateway_document_survive_the_wire() -> None:
    vips = {ip_address("203.0.113.5"): Vip(ip_address("198.18.0.101"), "pip-a"),
            ip_address("2001:db8::5"): Vip(None, "pip-b")}  # fmt: skip
    bgp = BgpIdentity(65010, IPv4Address("198.18.0.11"), (BgpPeer(ip_address("198.18.0.1"), 65000),))
    mux = MuxDocument("mux1", 7, bgp, vips)
    wire = json.loads(encode(mux))["vips"]
    assert wire["203.0.113.5/32"] == {"nextHop": "198.18.0.101", "owner": "pip-a"} and "2001:db8::5/128" in wire
    assert decode_document(encode(mux)) == mux
    gre = GreSettings(7, None, ip_address("198.19.0.2"))
    connection = Connection("c1", "GRE", ip_address("198.51.100.20"), (ip_network("192.0.2.0/24"),), None,
                            "psk", (), None, None, gre, None, False)  # fmt: skip
    compartment = Compartment("gw", 4097, "subnet", None, ip_address("203.0.113.7"), "Standard", None, 100_000,
                              (connection,))  # fmt: skip
    gateway = GatewayDocument("gw1", 9, "gw1", "pool", "active", (compartment,))
    assert decode_document(encode(gateway)) == gateway


def test_a_host_delta_carries_only_what_changed_and_applies_exactly() -> None:
    old = host_document((nic(4), nic(5), nic(6)), revision=3)
    new = replace(host_document((nic(4), nic(5, "203.0.113.30"), nic(7)), revision=8))
    delta = host_delta(old, new)
    assert delta is not None
    assert [n.id for n in delta.set_network_interfaces] == [nic(5).id, nic(7).id]
    assert delta.removed_network_interfaces == (nic(6).key,)
    assert delta.set_virtual_networks == () and delta.set_network_security_groups == ()
    [back] = decode_deltas(encode([delta]))
    assert back == delta
    assert apply_delta(old, back) == new
    assert host_delta(new, replace(new, revision=9)) is None


mux_states = st.dictionaries(
    st.integers(0, 255).map(lambda i: IPv4Address(f"203.0.113.{i}")),
    st.sampled_from([Vip(ip_address("198.18.0.101"), "a"), Vip(ip_address("198.18.0.102"), "a"), Vip(None, "b")]),
    max_size=40,
)


@given(mux_states, mux_states)
def test_a_mux_delta_takes_any_vip_table_to_any_other(
    before: dict[IPv4Address, Vip], after: dict[IPv4Address, Vip]
) -> None:
    old, new = MuxDocument("m", 1, None, dict(before)), MuxDocument("m", 2, None, dict(after))
    delta = mux_delta(old, new)
    if before == after:
        assert delta is None
        return
    assert delta is not None
    assert len(delta.set_vips) + len(delta.removed_vips) == len(
        {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    )
    held = decode_document(encode(old))  # an agent's own copy, which it may update in place
    document, deltas = receive(held, json.loads(b'{"revision": 2, "deltas": [' + encode(delta) + b"]}"))
    assert deltas == (delta,)
    assert document == new


def test_deltas_that_do_not_start_at_the_held_revision_are_refused() -> None:
    old = host_document((nic(4),), revision=3)
    delta = host_delta(old, host_document((nic(5),), revision=8))
    assert delta is not None
    try:
        apply_delta(replace(old, revision=4), delta)
    except ValueError as error:
        assert "does not apply" in str(error)
    else:
        raise AssertionError("a delta from revision 3 applied to revision 4")
