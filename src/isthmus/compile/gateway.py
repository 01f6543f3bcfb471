"""Gateway documents: the tenant compartments an active gateway node carries.

A compartment is one virtual network gateway: its leg in the tenant VNet (VNI, GatewaySubnet address),
its VIP, and its connections with what the data plane needs to bring them up (including the pre-shared
key, which only the node carrying the connection ever receives: the store keeps it sealed, and it is
opened here, by the `unseal` the controller gives, for that node's document alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from ipaddress import ip_interface
from typing import Any

from isthmus.compile.host import HostIndex, HostMemo, address, gateway_address, remote_hosts, router_mac
from isthmus.compile.placement import SKU_MBPS, Placed, Placement
from isthmus.compile.steering import shared_addresses
from isthmus.model.addresses import Address, Network, parse_network
from isthmus.model.documents import (
    BgpSettings,
    Compartment,
    Connection,
    GatewayDocument,
    GreSettings,
    IpsecPolicy,
    L3ForwardingSettings,
    RemoteHost,
    SiteRoute,
    TrafficSelector,
)
from isthmus.model.ids import normalize
from isthmus.model.snapshot import GATEWAYS, Snapshot, vnet_key_of

Unseal = Callable[[str, str], str]  # (sealed value, the store key it belongs to) -> the secret
SEALED_KEY = "sharedKeySealed"  # isthmus.store.sealed.SEALED (compile/ does not import the store)
RESET_GENERATION = "resetGeneration"  # a connection's count of resetconnection calls (not rendered)
# The hosts' side of their VNet routers' links (linux.nat_nft.TRANSIT; compile/ does not import linux): a
# site's BGP announcement never lands there.
HOST_TRANSIT = parse_network("198.19.128.0/17")


def gateway_document(
    snapshot: Snapshot,
    placement: Placement,
    node: str,
    unseal: Unseal | None = None,
    idx: HostIndex | None = None,
    memo: HostMemo | None = None,
) -> GatewayDocument:
    mine = next(
        (
            (doc["name"], doc["properties"]["pool"])
            for _k, doc in snapshot.of_type(GATEWAYS)
            if doc["properties"]["node"] == node
        ),
        None,
    )
    state: Any = "unassigned"
    for pool in placement.pools:
        if any(n == node for _g, n in pool.actives):
            state = "active"
        elif any(n == node for _g, n in pool.standbys):
            state = "standby"
    own = snapshot.nodes.get(node, {}).get("address")
    shared = shared_addresses(snapshot)
    compartments = tuple(
        _compartment(snapshot, p.virtual_network_gateway, p.connections, p.kbps, unseal, own, idx, memo,
                     shared.get(p.pool.lower()))
        for p in placement.for_node(node)
    )  # fmt: skip
    return GatewayDocument(
        node=node,
        revision=snapshot.revision,
        gateway=mine[0] if mine else None,
        pool=mine[1] if mine else None,
        state=state,
        compartments=compartments,
        address=address(own) if own else None,
        witnesses=_witnesses(snapshot),
    )


def _witnesses(snapshot: Snapshot) -> tuple[Address, ...]:
    """The MUXes' underlay addresses, which a gateway's watchdog asks when the controller does not answer."""
    muxes = (info.get("address") for info in snapshot.nodes.values() if info.get("role") == "mux")
    return tuple(address(a) for a in sorted(a for a in muxes if a))


def vnet_of_gateway(snapshot: Snapshot, gateway_id: str) -> str | None:
    """The virtualNetworks key a virtual network gateway's GatewaySubnet belongs to."""
    config = ((snapshot.get(gateway_id) or {}).get("properties", {}).get("ipConfigurations") or [{}])[0]
    subnet = config.get("properties", {}).get("subnet", {}).get("id")
    return vnet_key_of(subnet) if subnet else None


def site_routes(snapshot: Snapshot, placement: Placement) -> dict[str, tuple[SiteRoute, ...]]:
    """Per VNet key, the on-premises prefixes its placed gateway's connections reach, for every host of it:
    what the local network gateways declare and what the sites of BGP connections advertised (the observed
    `snapshot.learned_routes`), routed to the node carrying the compartment now."""
    out: dict[str, list[SiteRoute]] = {}
    for placed in placement.placed:
        route = _site_route(snapshot, placed)
        vnet = vnet_of_gateway(snapshot, placed.virtual_network_gateway)
        if route is not None and vnet is not None:
            out.setdefault(vnet, []).append(route)
    return {vnet: tuple(routes) for vnet, routes in sorted(out.items())}


def _site_route(snapshot: Snapshot, placed: Placed) -> SiteRoute | None:
    vtep = snapshot.nodes.get(placed.node, {}).get("address")
    gateway = snapshot.get(placed.virtual_network_gateway) or {}
    config = (gateway.get("properties", {}).get("ipConfigurations") or [{}])[0].get("properties", {})
    private, subnet = config.get("privateIPAddress"), config.get("subnet", {}).get("id")
    vni = snapshot.vnis.get(vnet_key_of(subnet)) if subnet else None
    if not vtep or not private or vni is None:
        return None
    prefixes: set[Network] = set()
    for connection_id in placed.connections:
        local = _local_gateway(snapshot, connection_id)
        prefixes.update(parse_network(p) for p in local.get("localNetworkAddressSpace", {}).get("addressPrefixes", []))
    prefixes |= learned_prefixes(snapshot, vnet_key_of(subnet), placed.connections)
    networks = tuple(sorted(prefixes, key=lambda n: (n.version, int(n.network_address), n.prefixlen)))
    return SiteRoute(placed.node, address(vtep), router_mac(vtep, vni), address(private), networks)


def learned_prefixes(snapshot: Snapshot, vnet: str, connections: Iterable[str]) -> set[Network]:
    """What the sites of `connections` advertised over BGP that the VNet's hosts route to the gateway: only
    connections with enableBgp, never a default route (a learned 0.0.0.0/0 does not force-tunnel the VNet),
    nothing that overlaps the VNet's own address space or the hosts' transit."""
    space = [parse_network(p) for p in (snapshot.get(vnet) or {}).get("properties", {}).get("addressSpace", {})
             .get("addressPrefixes", [])]  # fmt: skip
    out: set[Network] = set()
    for connection_id in connections:
        learned = snapshot.learned_routes.get(normalize(connection_id))
        if not learned or not (snapshot.get(connection_id) or {}).get("properties", {}).get("enableBgp"):
            continue
        for text in learned:
            prefix = parse_network(text)
            if prefix.prefixlen == 0 or any(_overlaps(prefix, s) for s in (*space, HOST_TRANSIT)):
                continue
            out.add(prefix)
    return out


def _overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def _local_gateway(snapshot: Snapshot, connection_id: str) -> Mapping[str, Any]:
    """The properties of a connection's local network gateway."""
    props = (snapshot.get(connection_id) or {}).get("properties", {})
    local = snapshot.get(props.get("localNetworkGateway2", {}).get("id", "")) or {}
    return local.get("properties", {})  # type: ignore[no-any-return]


def _bgp(settings: Mapping[str, Any] | None) -> BgpSettings | None:
    if not settings:
        return None
    return BgpSettings(settings.get("asn"), settings.get("bgpPeeringAddress"), settings.get("peerWeight"))


def ipsec_policy(p: Mapping[str, Any]) -> IpsecPolicy:
    """A stored ipsecPolicies entry (Azure's names) as the document's."""
    return IpsecPolicy(
        p["saLifeTimeSeconds"], p["saDataSizeKilobytes"], p["ipsecEncryption"], p["ipsecIntegrity"],
        p["ikeEncryption"], p["ikeIntegrity"], p["dhGroup"], p["pfsGroup"],
    )  # fmt: skip


def _gre(settings: Mapping[str, Any] | None) -> GreSettings | None:
    if settings is None:
        return None
    local, remote = settings.get("tunnelAddress"), settings.get("remoteTunnelAddress")
    return GreSettings(
        settings.get("key"),
        ip_interface(local) if local else None,
        address(remote) if remote else None,
        bool(settings.get("checksum")),
    )


def _l3(settings: Mapping[str, Any] | None) -> L3ForwardingSettings | None:
    if settings is None:
        return None
    local, hop = settings.get("localAddress"), settings.get("nextHop")
    return L3ForwardingSettings(
        ip_interface(local) if local else None, address(hop) if hop else None, settings.get("vlanId")
    )


def _selector(policy: Mapping[str, Any]) -> TrafficSelector:
    return TrafficSelector(
        tuple(parse_network(r) for r in policy["localAddressRanges"]),
        tuple(parse_network(r) for r in policy["remoteAddressRanges"]),
    )


def _shared_key(props: Mapping[str, Any], connection_id: str, unseal: Unseal | None) -> str | None:
    """The connection's pre-shared key in clear: opened from its sealed value (no `unseal`: none), or as a
    snapshot built without the store (unit tests) holds it."""
    sealed = props.get(SEALED_KEY)
    if sealed is not None:
        return unseal(sealed, normalize(connection_id)) if unseal is not None else None
    clear = props.get("sharedKey")
    return str(clear) if clear is not None else None


def _compartment(
    snapshot: Snapshot,
    gateway_id: str,
    connections: tuple[str, ...],
    kbps: int,
    unseal: Unseal | None,
    own: str | None,
    idx: HostIndex | None,
    memo: HostMemo | None,
    shared: Address | None = None,
) -> Compartment:
    """`shared`: the public IP the gateway's pool shares, on which it answers instead of its own."""
    doc = snapshot.get(gateway_id) or {}
    props = doc.get("properties", {})
    config = props.get("ipConfigurations", [{}])[0].get("properties", {})
    pip = config.get("publicIPAddress", {}).get("id", "")
    subnet = config.get("subnet", {}).get("id", "")
    out = []
    for connection_id in connections:
        conn = snapshot.get(connection_id) or {}
        cp = conn.get("properties", {})
        lp = _local_gateway(snapshot, connection_id)
        remote = lp.get("gatewayIpAddress")
        out.append(
            Connection(
                id=conn.get("id", connection_id),
                connection_type=cp.get("connectionType", ""),
                remote_address=address(remote) if remote else None,
                remote_prefixes=tuple(
                    parse_network(p) for p in lp.get("localNetworkAddressSpace", {}).get("addressPrefixes", [])
                ),
                remote_bgp=_bgp(lp.get("bgpSettings")),
                shared_key=_shared_key(cp, conn.get("id", connection_id), unseal),
                ipsec_policies=tuple(ipsec_policy(p) for p in cp.get("ipsecPolicies") or ()),
                dpd_timeout_seconds=cp.get("dpdTimeoutSeconds"),
                connection_mode=cp.get("connectionMode"),
                gre_settings=_gre(cp.get("greSettings")),
                l3_forwarding_settings=_l3(cp.get("l3ForwardingSettings")),
                enable_bgp=bool(cp.get("enableBgp")),
                use_policy_based_traffic_selectors=bool(cp.get("usePolicyBasedTrafficSelectors")),
                traffic_selector_policies=tuple(_selector(t) for t in cp.get("trafficSelectorPolicies") or ()),
                reset_generation=int(cp.get(RESET_GENERATION, 0)),
            )
        )
    private = config.get("privateIPAddress")
    vip = shared or (snapshot.public_ips.get(pip.lower()) if pip else None)
    vnet = vnet_key_of(subnet) if subnet else None
    vni = snapshot.vnis.get(vnet) if vnet else None
    vnet_doc = snapshot.get(vnet) if vnet else None
    space = (vnet_doc or {}).get("properties", {}).get("addressSpace", {}).get("addressPrefixes", [])
    remotes: tuple[RemoteHost, ...] = ()
    if vnet is not None and vni is not None and idx is not None:
        remotes = remote_hosts(snapshot, idx, vnet, vni, memo if memo is not None else HostMemo())
    return Compartment(
        virtual_network_gateway=gateway_id,
        vni=snapshot.vnis.get(vnet_key_of(subnet)) if subnet else None,
        gateway_subnet=subnet,
        private_ip_address=address(private) if private else None,
        vip=vip,
        sku=props.get("sku", {}).get("name"),
        bgp=_bgp(props.get("bgpSettings")) if props.get("enableBgp") else None,
        bandwidth_kbps=kbps,
        connections=tuple(out),
        router_mac=router_mac(own, vni) if own and vni is not None else None,
        address_space=tuple(parse_network(p) for p in space),
        remotes=remotes,
        subnet_gateways=_subnet_gateways(vnet_doc),
        connection_kbps=SKU_MBPS.get(props.get("sku", {}).get("name", ""), 0) * 1000,
        vip_shared=shared is not None,
    )


def _subnet_gateways(vnet: Mapping[str, Any] | None) -> tuple[Address, ...]:
    out = []
    for subnet in (vnet or {}).get("properties", {}).get("subnets", []):
        props = subnet.get("properties", {})
        if subnet.get("name", "").lower() != "gatewaysubnet":
            out += [gateway_address(parse_network(p)) for p in props.get("addressPrefixes") or [props["addressPrefix"]]]
    return tuple(out)
