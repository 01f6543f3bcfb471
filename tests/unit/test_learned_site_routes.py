"""compile/ on hand-made snapshots: the routes a BGP connection's site advertised (observed, beside the intent)
join the VNet's siteRoutes on its hosts, with what must never be routed to a site left out; a change of them
reaches only that VNet's hosts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from isthmus.compile.documents import Compiler
from isthmus.model.documents import HostDocument
from isthmus.model.placement import Assigned, GatewayState
from isthmus.model.snapshot import (
    BINDINGS,
    CONNECTION,
    GATEWAYS,
    HOSTS,
    LOCAL_GATEWAY,
    NIC,
    POOLS,
    VNET,
    VNET_GATEWAY,
    Snapshot,
    build,
    learned_key,
)

SUB = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network"
GW = f"{SUB}/virtualnetworkgateways/gw"
BGP, STATIC = f"{SUB}/connections/bgp", f"{SUB}/connections/static"


def world(learned: dict[str, tuple[str, ...]] | None = None, bgp: bool = True) -> Snapshot:
    """VNet v1 (100.64.0.0/16) with a gateway on gw1, a NIC on h1; VNet v2 with a NIC on h2 and no gateway. v1's
    gateway has a BGP connection (site declares nothing) and a static one (site declares 192.0.2.0/26)."""
    docs: dict[str, dict[str, Any]] = {}
    types: dict[str, str] = {}

    def add(key: str, type_: str, body: dict[str, Any]) -> None:
        docs[key], types[key] = {"id": key, **body}, type_

    for n, (space, host) in enumerate((("100.64.0.0/16", "h1"), ("100.65.0.0/16", "h2")), start=1):
        vnet = f"{SUB}/virtualnetworks/v{n}"
        subnets = [
            {
                "id": f"{vnet}/subnets/a",
                "name": "a",
                "properties": {"addressPrefix": space.replace("0.0/16", "1.0/24")},
            },
            {
                "id": f"{vnet}/subnets/gatewaysubnet",
                "name": "GatewaySubnet",
                "properties": {"addressPrefix": space.replace("0.0/16", "255.0/27")},
            },
        ]
        add(vnet, VNET, {"properties": {"addressSpace": {"addressPrefixes": [space]}, "subnets": subnets}})
        nic = f"{SUB}/networkinterfaces/nic{n}"
        config = {
            "name": "c",
            "properties": {"subnet": {"id": f"{vnet}/subnets/a"}, "privateIPAddress": space.replace("0.0/16", "1.4")},
        }
        add(nic, NIC, {"properties": {"macAddress": f"02:00:00:00:00:0{n}", "ipConfigurations": [config]}})
        add(
            f"admin/portbindings/vm{n}",
            BINDINGS,
            {"name": f"vm{n}", "properties": {"networkInterface": nic, "host": host}},
        )
        add(f"admin/hosts/{host}", HOSTS, {"name": host, "properties": {"node": host, "address": f"198.18.0.1{n}"}})
    add(
        "admin/gatewaypools/p",
        POOLS,
        {
            "name": "p",
            "properties": {
                "type": "All",
                "redundantGatewayCount": 0,
                "gatewayCapacityKbps": 1_000_000,
                "tierBandwidthKbps": 100_000,
            },
        },
    )
    add("admin/gateways/g1", GATEWAYS, {"name": "g1", "properties": {"node": "gw1", "pool": "p"}})
    gateway_config = {
        "subnet": {"id": f"{SUB}/virtualnetworks/v1/subnets/gatewaysubnet"},
        "privateIPAddress": "100.64.255.4",
    }
    add(
        GW,
        VNET_GATEWAY,
        {
            "properties": {
                "sku": {"name": "Standard"},
                "enableBgp": True,
                "bgpSettings": {"asn": 65515, "bgpPeeringAddress": "100.64.255.4"},
                "ipConfigurations": [{"properties": gateway_config}],
            }
        },
    )
    add(
        f"{SUB}/localnetworkgateways/bgp-site",
        LOCAL_GATEWAY,
        {
            "properties": {
                "gatewayIpAddress": "198.51.100.21",
                "localNetworkAddressSpace": {"addressPrefixes": []},
                "bgpSettings": {"asn": 65050, "bgpPeeringAddress": "198.19.1.2"},
            }
        },
    )
    add(
        f"{SUB}/localnetworkgateways/static-site",
        LOCAL_GATEWAY,
        {
            "properties": {
                "gatewayIpAddress": "198.51.100.22",
                "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/26"]},
            }
        },
    )
    for key, local, enable in ((BGP, "bgp-site", bgp), (STATIC, "static-site", False)):
        add(
            key,
            CONNECTION,
            {
                "properties": {
                    "connectionType": "GRE",
                    "enableBgp": enable,
                    "virtualNetworkGateway1": {"id": GW},
                    "localNetworkGateway2": {"id": f"{SUB}/localnetworkgateways/{local}"},
                }
            },
        )
    vnis = {f"{SUB}/virtualnetworks/v1": 4096, f"{SUB}/virtualnetworks/v2": 4097}
    nodes = {
        "gw1": {"role": "gateway", "address": "198.18.0.51"},
        "h1": {"role": "host", "address": "198.18.0.11"},
        "h2": {"role": "host", "address": "198.18.0.12"},
    }
    return build(
        1,
        docs,
        types,
        vnis,
        {},
        nodes,
        {GW: Assigned("g1", "p", "gw1", 200_000, "test")},
        {"g1": GatewayState("active")},
        (1,),
        learned or {},
        (1,),
    )


def sites(compiler: Compiler, host: str) -> list[tuple[str, list[str]]]:
    doc = compiler.document(host)
    assert isinstance(doc, HostDocument)
    return [(s.node, [str(p) for p in s.prefixes]) for v in doc.virtual_networks for s in v.site_routes]


def test_hosts_route_the_declared_and_the_learned_prefixes_to_the_compartments_node() -> None:
    learned = {BGP: ("192.0.2.128/25", "192.0.2.0/26", "198.51.100.0/24", "2001:db8:1::/48")}
    assert sites(Compiler(world(learned)), "h1") == [
        ("gw1", ["192.0.2.0/26", "192.0.2.128/25", "198.51.100.0/24", "2001:db8:1::/48"])  # deduplicated, ordered
    ]
    assert sites(Compiler(world(learned)), "h2") == []  # another VNet


def test_never_a_default_route_the_vnets_own_space_the_hosts_transit_or_a_connection_without_bgp() -> None:
    learned = {
        BGP: ("0.0.0.0/0", "::/0", "100.64.0.0/15", "100.64.7.0/24", "198.19.128.0/31", "192.0.2.128/25"),
        STATIC: ("198.51.100.0/24",),
    }
    assert sites(Compiler(world(learned)), "h1") == [("gw1", ["192.0.2.0/26", "192.0.2.128/25"])]
    assert sites(Compiler(world(learned, bgp=False)), "h1") == [("gw1", ["192.0.2.0/26"])]


def test_a_change_of_learned_routes_reaches_only_the_hosts_of_that_vnet_and_equals_a_fresh_compile() -> None:
    old = world({BGP: ("192.0.2.128/25",)})
    compiler = Compiler(old)
    new = replace(old, revision=2, learned_routes={BGP: ("198.51.100.0/24",)}, learned_version=(2,))
    assert compiler.advance(new, {learned_key(BGP)}) == {"h1"}
    fresh = Compiler(new)
    for node in ("h1", "h2", "gw1"):
        assert compiler.document(node) == fresh.document(node)
    assert sites(compiler, "h1") == [("gw1", ["192.0.2.0/26", "198.51.100.0/24"])]
    same = replace(new, revision=3, learned_routes={BGP: ("198.51.100.0/24", "0.0.0.0/0")})
    assert compiler.advance(same, {learned_key(BGP)}) == set()  # a default route changes no document
