"""Gateway documents: the tenant compartments an active gateway node carries.

A compartment is one virtual network gateway: its leg in the tenant VNet (VNI, GatewaySubnet address),
its VIP, and its connections with what the data plane needs to bring them up (including the pre-shared
key, which only the node carrying the connection ever receives).
"""

from __future__ import annotations

from typing import Any

from isthmus.compile.placement import Placement
from isthmus.model.snapshot import GATEWAYS, Snapshot, vnet_key_of


def gateway_document(snapshot: Snapshot, placement: Placement, node: str) -> dict[str, Any]:
    mine = next(
        (
            (doc["name"], doc["properties"]["pool"])
            for _k, doc in snapshot.of_type(GATEWAYS)
            if doc["properties"]["node"] == node
        ),
        None,
    )
    role = "unassigned"
    for pool in placement.pools:
        if any(n == node for _g, n in pool.actives):
            role = "active"
        elif any(n == node for _g, n in pool.standbys):
            role = "standby"
    compartments = [
        _compartment(snapshot, p.virtual_network_gateway, p.connections, p.kbps) for p in placement.for_node(node)
    ]
    return {
        "node": node,
        "role": "gateway",
        "revision": snapshot.revision,
        "gateway": mine[0] if mine else None,
        "pool": mine[1] if mine else None,
        "state": role,
        "compartments": compartments,
    }


def _compartment(snapshot: Snapshot, gateway_id: str, connections: tuple[str, ...], kbps: int) -> dict[str, Any]:
    doc = snapshot.get(gateway_id) or {}
    props = doc.get("properties", {})
    config = props.get("ipConfigurations", [{}])[0].get("properties", {})
    pip = config.get("publicIPAddress", {}).get("id", "")
    subnet = config.get("subnet", {}).get("id", "")
    out = []
    for connection_id in connections:
        conn = snapshot.get(connection_id) or {}
        cp = conn.get("properties", {})
        local = snapshot.get(cp.get("localNetworkGateway2", {}).get("id", "")) or {}
        lp = local.get("properties", {})
        entry = {
            "id": conn.get("id"),
            "connectionType": cp.get("connectionType"),
            "remoteAddress": lp.get("gatewayIpAddress"),
            "remotePrefixes": lp.get("localNetworkAddressSpace", {}).get("addressPrefixes", []),
            "remoteBgp": lp.get("bgpSettings"),
        }
        for name in (
            "sharedKey",
            "ipsecPolicies",
            "dpdTimeoutSeconds",
            "connectionMode",
            "greSettings",
            "l3ForwardingSettings",
            "enableBgp",
        ):
            if name in cp:
                entry[name] = cp[name]
        out.append(entry)
    return {
        "virtualNetworkGateway": gateway_id,
        "vni": snapshot.vnis.get(vnet_key_of(subnet)) if subnet else None,
        "gatewaySubnet": subnet,
        "privateIPAddress": config.get("privateIPAddress"),
        "vip": snapshot.public_ips.get(pip.lower()) if pip else None,
        "sku": props.get("sku", {}).get("name"),
        "bgp": props.get("bgpSettings") if props.get("enableBgp") else None,
        "bandwidthKbps": kbps,
        "connections": out,
    }
