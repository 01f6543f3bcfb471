"""One public IP for all pools, compiled: steering entries for the MUXes, compartments on the shared address,
a failover that moves only the failed gateway's tenants' steering (and a MUX delta that says just that)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address
from typing import Any

from isthmus.compile.documents import Compiler
from isthmus.compile.placement import plan
from isthmus.model.addresses import Address
from isthmus.model.documents import GatewayDocument, MuxDocument, apply_mux_delta, decode_document, encode, mux_delta
from isthmus.model.placement import FAILED, GatewayState
from isthmus.model.snapshot import (
    CONNECTION,
    GATEWAYS,
    LOCAL_GATEWAY,
    MUXES,
    POOLS,
    VNET_GATEWAY,
    Snapshot,
    build,
    shared_address_owner,
)
from isthmus.model.steering import GRE, IPSEC, SteerKey, collides, steer_keys

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
SHARED = "203.0.113.200"
NODES = {"gw1": "198.18.0.51", "gw2": "198.18.0.52", "gw3": "198.18.0.53", "gw4": "198.18.0.54"}


def world(
    tenants: dict[str, tuple[str, str, int | None]], shared: str | None = SHARED, own_pool_b: str | None = None
) -> Snapshot:
    """Pools a (gw1 active, gw2 standby; Standard) and b (gw3, gw4; HighPerformance) sharing SHARED; per tenant
    a VNet gateway (its SKU picks its pool) with one connection: name -> (SKU, site address, GRE key or None
    for IPsec)."""
    documents: dict[str, Any] = {}
    types: dict[str, str] = {}
    public: dict[str, Address] = {}

    def add(key: str, type_: str, body: dict[str, Any]) -> None:
        documents[key.lower()] = body
        types[key.lower()] = type_

    for name, tier in (("a", 100_000), ("b", 200_000)):
        props: dict[str, Any] = {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 10_000_000,
                                 "tierBandwidthKbps": tier}  # fmt: skip
        address = shared if name == "a" else (own_pool_b or shared)
        if address:
            props["publicIpAddress"] = address
        add(f"admin/gatewaypools/{name}", POOLS, {"name": name, "properties": props})
    if shared:
        public[shared_address_owner(shared)] = ip_address(shared)
    for gateway, pool in (("gw1", "a"), ("gw2", "a"), ("gw3", "b"), ("gw4", "b")):
        add(f"admin/gateways/{gateway}", GATEWAYS, {"name": gateway, "properties": {"node": gateway, "pool": pool}})
    add("admin/loadbalancermuxes/mux1", MUXES, {"name": "mux1", "properties": {
        "node": "mux1", "asn": 65010, "routerId": "198.18.0.11", "peers": []}})  # fmt: skip
    for index, (name, (sku, site, key)) in enumerate(sorted(tenants.items())):
        gid, pip = f"{SUB}/virtualNetworkGateways/{name}", f"{SUB}/publicIPAddresses/{name}-ip"
        subnet = f"{SUB}/virtualNetworks/{name}/subnets/GatewaySubnet"
        config = {"properties": {"publicIPAddress": {"id": pip}, "subnet": {"id": subnet}}}
        add(gid, VNET_GATEWAY, {"id": gid, "properties": {"sku": {"name": sku}, "ipConfigurations": [config]}})
        public[pip.lower()] = ip_address(f"203.0.113.{10 + index}")
        lid = f"{SUB}/localNetworkGateways/{name}-site"
        add(lid, LOCAL_GATEWAY, {"id": lid, "properties": {"gatewayIpAddress": site}})
        cid = f"{SUB}/connections/{name}-c"
        props = {"connectionType": "IPsec" if key is None else "GRE", "virtualNetworkGateway1": {"id": gid},
                 "localNetworkGateway2": {"id": lid}}  # fmt: skip
        if key is not None:
            props["greSettings"] = {"key": key} if key >= 0 else {}
        add(cid, CONNECTION, {"id": cid, "properties": props})
    nodes = {name: {"role": "gateway", "address": address} for name, address in NODES.items()}
    nodes["mux1"] = {"role": "mux", "address": "198.18.0.11"}
    first = build(1, documents, types, {}, public, nodes)
    settled = plan(first, {}, {})
    return replace(first, assignment=settled.assignment, gateway_states=settled.states)


TENANTS = {
    "t1": ("Standard", "198.51.100.21", None),  # IPsec, pool a
    "t2": ("HighPerformance", "198.51.100.22", None),  # IPsec, pool b
    "t3": ("Standard", "198.51.100.23", 7),  # GRE key 7, pool a
    "t4": ("HighPerformance", "198.51.100.23", 8),  # GRE key 8 from the same site, pool b
}


def test_every_connection_steered_to_its_gateway_node_and_the_shared_address_has_no_backend() -> None:
    compiler = Compiler(world(TENANTS))
    mux = compiler.document("mux1")
    assert isinstance(mux, MuxDocument)
    steering = {(str(s.site), s.protocol, s.gre_key): str(s.next_hop) for s in mux.steering}
    assert steering == {
        ("198.51.100.21", IPSEC, None): NODES["gw1"],
        ("198.51.100.22", IPSEC, None): NODES["gw3"],
        ("198.51.100.23", GRE, 7): NODES["gw1"],
        ("198.51.100.23", GRE, 8): NODES["gw3"],
    }
    assert {str(s.vip) for s in mux.steering} == {SHARED}
    assert mux.vips[ip_address(SHARED)].next_hop is None  # announced; what is not steered is dropped
    own = [vip for address, vip in mux.vips.items() if str(address) != SHARED]
    assert own and all(vip.next_hop is None for vip in own)  # the tenants' own public IPs answer nowhere
    assert decode_document(encode(mux)) == mux


def test_compartments_answer_on_the_shared_address() -> None:
    compiler = Compiler(world(TENANTS))
    document = compiler.document("gw1")
    assert isinstance(document, GatewayDocument)
    assert {str(c.vip) for c in document.compartments} == {SHARED}
    assert all(c.vip_shared for c in document.compartments)
    [gre] = [c for c in document.compartments if c.connections[0].connection_type == "GRE"]
    assert steer_keys(gre.connections) == (SteerKey(ip_address("198.51.100.23"), GRE, 7),)


def test_a_pool_without_a_shared_address_routes_its_gateways_own_public_ips() -> None:
    compiler = Compiler(world(TENANTS, own_pool_b="203.0.113.201"))
    mux = compiler.document("mux1")
    assert isinstance(mux, MuxDocument)
    assert {str(s.vip) for s in mux.steering} == {SHARED, "203.0.113.201"}
    plain = Compiler(world(TENANTS, shared=None)).document("mux1")
    assert isinstance(plain, MuxDocument) and plain.steering == ()
    assert all(vip.next_hop is not None for vip in plain.vips.values())
    assert {str(c.vip) for c in Compiler(world(TENANTS, shared=None)).document("gw1").compartments} <= {  # type: ignore[union-attr]
        f"203.0.113.{n}" for n in range(10, 14)
    }


def test_failover_moves_only_the_failed_gateways_tenants_steering() -> None:
    before = world(TENANTS)
    compiler = Compiler(before)
    old = compiler.document("mux1")
    assert isinstance(old, MuxDocument)
    states = {**before.gateway_states, "gw1": GatewayState("active", FAILED, available=False, epoch=1)}
    moved = plan(before, before.assignment, states)
    after = replace(before, revision=2, assignment=moved.assignment, gateway_states=moved.states)
    affected = compiler.advance(after, set())
    new = compiler.document("mux1")
    assert isinstance(new, MuxDocument) and "mux1" in affected
    assert new == Compiler(after).document("mux1")  # incremental == from scratch
    delta = mux_delta(old, new, compiler.vips_touched)
    assert delta is not None
    assert {(str(s.site), s.gre_key, str(s.next_hop)) for s in delta.set_steering} == {
        ("198.51.100.21", None, NODES["gw2"]),
        ("198.51.100.23", 7, NODES["gw2"]),
    }
    assert delta.removed_steering == ()
    assert not delta.set_vips and not delta.removed_vips  # the shared address itself does not move
    unchanged = {s.key: s for s in old.steering if s.next_hop != ip_address(NODES["gw1"])}
    assert all(s == unchanged[s.key] for s in new.steering if s.key in unchanged)
    held = decode_document(encode(old))
    assert isinstance(held, MuxDocument)
    assert apply_mux_delta(held, delta) == new


def test_collisions() -> None:
    site, other = ip_address("198.51.100.30"), ip_address("198.51.100.31")
    assert collides(SteerKey(site, IPSEC, None), SteerKey(site, IPSEC, None))
    assert not collides(SteerKey(site, IPSEC, None), SteerKey(other, IPSEC, None))
    assert not collides(SteerKey(site, IPSEC, None), SteerKey(site, GRE, None))  # told apart by the protocol
    assert collides(SteerKey(site, GRE, 5), SteerKey(site, GRE, 5))
    assert not collides(SteerKey(site, GRE, 5), SteerKey(site, GRE, 6))
    assert collides(SteerKey(site, GRE, None), SteerKey(site, GRE, 6))  # no key: all the site's GRE
