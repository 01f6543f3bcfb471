"""The real azure-mgmt-network client against a real controller over HTTPS, unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as m

from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.e2e.conftest import SUB_A, SUB_B, Live

GROUP = "sdk-rg"


class StaticToken:
    """The smallest TokenCredential: the controller's bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def client_for(live: Live, token: str, subscription: str) -> NetworkManagementClient:
    return NetworkManagementClient(
        StaticToken(token),
        subscription,
        base_url=live.url,  # type: ignore[arg-type]
        connection_verify=str(live.ca),
        retry_total=0,
        polling_interval=0,
    )


@pytest.fixture(scope="module")
def network(live: Live) -> Iterator[NetworkManagementClient]:
    http = httpx.Client(base_url=live.url, verify=str(live.ca), headers={"Authorization": f"Bearer {live.operator}"})
    pool = http.put("/admin/publicIpPools/sdk-pool", json={"properties": {"addressPrefixes": ["203.0.113.0/25"]}})
    assert pool.status_code in (200, 201), pool.text
    gateways = {"type": "S2sIpsec", "redundantGatewayCount": 0, "gatewayCapacityKbps": 1_000_000,
                "tierBandwidthKbps": 100_000}  # fmt: skip
    for path, properties in (("gatewayPools/sdk", gateways), ("gateways/sdk-gw1", {"node": "sdk-gw1", "pool": "sdk"})):
        made = http.put(f"/admin/{path}", json={"properties": properties})
        assert made.status_code in (200, 201), made.text
    group = http.put(
        f"/subscriptions/{SUB_A}/resourcegroups/{GROUP}",
        params={"api-version": "2024-11-01"},
        json={"location": "local"},
        headers={"Authorization": f"Bearer {live.tenant_a}"},
    )
    assert group.status_code in (200, 201), group.text
    with client_for(live, live.tenant_a, SUB_A) as client:
        yield client


def vnet_id(name: str) -> str:
    return f"/subscriptions/{SUB_A}/resourceGroups/{GROUP}/providers/Microsoft.Network/virtualNetworks/{name}"


def test_full_lifecycle(network: NetworkManagementClient) -> None:
    nsg = network.network_security_groups.begin_create_or_update(
        GROUP,
        "web-nsg",
        m.NetworkSecurityGroup(
            location="local",
            security_rules=[
                m.SecurityRule(
                    name="allow-ssh",
                    protocol="Tcp",
                    source_port_range="*",
                    destination_port_range="22",
                    source_address_prefix="Internet",
                    destination_address_prefix="*",
                    access="Allow",
                    priority=100,
                    direction="Inbound",
                ),
                m.SecurityRule(
                    name="allow-web",
                    protocol="Tcp",
                    source_port_range="*",
                    destination_port_ranges=["80", "443", "8000-8080"],
                    source_address_prefixes=["198.51.100.0/24", "203.0.113.0/24"],
                    destination_address_prefix="VirtualNetwork",
                    access="Allow",
                    priority=110,
                    direction="Inbound",
                ),
            ],
        ),
    ).result()
    assert nsg.provisioning_state == "Succeeded"
    assert {r.name for r in nsg.default_security_rules} >= {"DenyAllInBound", "AllowInternetOutBound"}

    vnet = network.virtual_networks.begin_create_or_update(
        GROUP,
        "vnet1",
        m.VirtualNetwork(
            location="local",
            address_space=m.AddressSpace(address_prefixes=["100.64.0.0/16"]),
            subnets=[
                m.Subnet(
                    name="web",
                    address_prefix="100.64.1.0/24",
                    network_security_group=m.SubResource(id=nsg.id),
                ),
                m.Subnet(name="app", address_prefix="100.64.2.0/24"),
                m.Subnet(name="GatewaySubnet", address_prefix="100.64.255.0/27"),
            ],
        ),
    ).result()
    assert [s.name for s in vnet.subnets] == ["web", "app", "GatewaySubnet"]
    web = network.subnets.get(GROUP, "vnet1", "web")
    assert web.network_security_group.id.lower() == nsg.id.lower()

    pip = network.public_ip_addresses.begin_create_or_update(
        GROUP,
        "vm-ip",
        m.PublicIPAddress(
            location="local",
            public_ip_allocation_method="Static",
            sku=m.PublicIPAddressSku(name="Standard"),
        ),
    ).result()
    assert pip.ip_address.startswith("203.0.113.")

    nic = network.network_interfaces.begin_create_or_update(
        GROUP,
        "vm-nic",
        m.NetworkInterface(
            location="local",
            network_security_group=m.NetworkSecurityGroup(id=nsg.id),
            ip_configurations=[
                m.NetworkInterfaceIPConfiguration(
                    name="ipconfig1",
                    subnet=m.Subnet(id=web.id),
                    public_ip_address=m.PublicIPAddress(id=pip.id),
                )
            ],
        ),
    ).result()
    assert nic.ip_configurations[0].private_ip_address == "100.64.1.4"
    assert nic.mac_address

    def verify(port: str, remote: str) -> m.VerificationIPFlowResult:
        question = m.VerificationIPFlowParameters(
            target_resource_id=nic.id, direction="Inbound", protocol="TCP", local_port=port, remote_port="40000",
            local_ip_address="100.64.1.4", remote_ip_address=remote,
        )  # fmt: skip
        return network.network_watchers.begin_verify_ip_flow(GROUP, "NetworkWatcher_local", question).result()

    allowed = verify("22", "198.51.100.7")
    assert (allowed.access, allowed.rule_name) == ("Allow", "securityRules/allow-ssh")
    denied = verify("23", "198.51.100.7")
    assert (denied.access, denied.rule_name) == ("Deny", "defaultSecurityRules/DenyAllInBound")

    gw_ip = network.public_ip_addresses.begin_create_or_update(
        GROUP, "gw-ip", m.PublicIPAddress(location="local", public_ip_allocation_method="Dynamic")
    ).result()
    gateway = network.virtual_network_gateways.begin_create_or_update(
        GROUP,
        "vpn-gw",
        m.VirtualNetworkGateway(
            location="local",
            gateway_type="Vpn",
            vpn_type="RouteBased",
            sku=m.VirtualNetworkGatewaySku(name="Standard", tier="Standard"),
            ip_configurations=[
                m.VirtualNetworkGatewayIPConfiguration(
                    name="gwipconfig",
                    subnet=m.SubResource(id=vnet_id("vnet1") + "/subnets/GatewaySubnet"),
                    public_ip_address=m.SubResource(id=gw_ip.id),
                )
            ],
        ),
    ).result()
    assert gateway.provisioning_state == "Succeeded"
    assert network.public_ip_addresses.get(GROUP, "gw-ip").ip_address.startswith("203.0.113.")

    site = network.local_network_gateways.begin_create_or_update(
        GROUP,
        "onprem",
        m.LocalNetworkGateway(
            location="local",
            gateway_ip_address="198.51.100.20",
            local_network_address_space=m.AddressSpace(address_prefixes=["192.0.2.0/24"]),
        ),
    ).result()
    connection = network.virtual_network_gateway_connections.begin_create_or_update(
        GROUP,
        "to-onprem",
        m.VirtualNetworkGatewayConnection(
            location="local",
            connection_type="IPsec",
            shared_key="psk-from-the-sdk",
            virtual_network_gateway1=m.VirtualNetworkGateway(id=gateway.id),
            local_network_gateway2=m.LocalNetworkGateway(id=site.id),
            ipsec_policies=[
                m.IpsecPolicy(
                    sa_life_time_seconds=3600,
                    sa_data_size_kilobytes=102400000,
                    ipsec_encryption="AES256",
                    ipsec_integrity="SHA256",
                    ike_encryption="AES256",
                    ike_integrity="SHA384",
                    dh_group="DHGroup14",
                    pfs_group="PFS2048",
                )
            ],
        ),
    ).result()
    assert connection.provisioning_state == "Succeeded"
    assert connection.shared_key is None  # write-only
    assert connection.connection_status == "Unknown"  # no gateway agent carries it in this test

    # the connection's own operations, as the SDK calls them
    ops = network.virtual_network_gateway_connections
    assert ops.get_shared_key(GROUP, "to-onprem").value == "psk-from-the-sdk"
    ops.begin_set_shared_key(GROUP, "to-onprem", m.ConnectionSharedKey(value="rotated-by-the-sdk")).result()
    assert ops.get_shared_key(GROUP, "to-onprem").value == "rotated-by-the-sdk"
    assert (
        ops.begin_reset_shared_key(GROUP, "to-onprem", m.ConnectionResetSharedKey(key_length=32)).result().key_length
        == 32
    )
    assert len(ops.get_shared_key(GROUP, "to-onprem").value) == 32
    ops.begin_reset_connection(GROUP, "to-onprem").result()
    assert ops.begin_get_ike_sas(GROUP, "to-onprem").result() == "[]"
    devices = network.virtual_network_gateways.supported_vpn_devices(GROUP, "vpn-gw")
    assert 'Vendor name="strongSwan"' in devices
    script = network.virtual_network_gateways.vpn_device_configuration_script(
        GROUP,
        "to-onprem",
        m.VpnDeviceScriptParameters(vendor="strongSwan", device_family="swanctl", firmware_version="5.9"),
    )
    assert "remote_ts = 100.64.0.0/16" in script and "aes256-sha384-modp2048" in script and "rotated" not in script
    assert f"remote_addrs = {network.public_ip_addresses.get(GROUP, 'gw-ip').ip_address}" in script

    # list and get
    assert [v.name for v in network.virtual_networks.list(GROUP)] == ["vnet1"]
    assert "vnet1" in [v.name for v in network.virtual_networks.list_all()]
    assert {p.name for p in network.public_ip_addresses.list(GROUP)} == {"vm-ip", "gw-ip"}
    assert [r.name for r in network.security_rules.list(GROUP, "web-nsg")] == ["allow-ssh", "allow-web"]
    assert network.network_interfaces.get(GROUP, "vm-nic").ip_configurations[0].public_ip_address.id == pip.id

    # update tags, and a round trip of a GET back into a PUT
    tagged = network.virtual_networks.update_tags(GROUP, "vnet1", m.TagsObject(tags={"env": "demo"}))
    assert tagged.tags == {"env": "demo"}
    fetched = network.virtual_networks.get(GROUP, "vnet1")
    fetched.tags = {"env": "demo", "owner": "sdk"}
    again = network.virtual_networks.begin_create_or_update(GROUP, "vnet1", fetched).result()
    assert again.tags == {"env": "demo", "owner": "sdk"}
    rule = network.security_rules.begin_create_or_update(
        GROUP,
        "web-nsg",
        "allow-dns",
        m.SecurityRule(
            protocol="Udp",
            source_port_range="*",
            destination_port_range="53",
            source_address_prefix="*",
            destination_address_prefix="*",
            access="Allow",
            priority=120,
            direction="Outbound",
        ),
    ).result()
    assert rule.priority == 120

    # errors surface as HttpResponseError with Azure's codes
    with pytest.raises(HttpResponseError) as in_use:
        network.subnets.begin_delete(GROUP, "vnet1", "web").result()
    assert in_use.value.error.code == "InUseSubnetCannotBeDeleted"
    with pytest.raises(HttpResponseError) as bad_priority:
        network.security_rules.begin_create_or_update(
            GROUP,
            "web-nsg",
            "bad",
            m.SecurityRule(
                protocol="Tcp",
                source_port_range="*",
                destination_port_range="1",
                source_address_prefix="*",
                destination_address_prefix="*",
                access="Allow",
                priority=5000,
                direction="Inbound",
            ),
        ).result()
    assert bad_priority.value.error.code == "SecurityRuleInvalidPriority"
    with pytest.raises(HttpResponseError) as overlap:
        network.virtual_networks.begin_create_or_update(
            GROUP,
            "bad",
            m.VirtualNetwork(
                location="local",
                address_space=m.AddressSpace(address_prefixes=["100.64.0.0/16", "100.64.0.0/17"]),
            ),
        ).result()
    assert overlap.value.error.code == "VnetAddressSpacesOverlap"
    with pytest.raises(HttpResponseError) as reference:
        network.network_interfaces.begin_create_or_update(
            GROUP,
            "bad-nic",
            m.NetworkInterface(
                location="local",
                ip_configurations=[
                    m.NetworkInterfaceIPConfiguration(name="c", subnet=m.Subnet(id=vnet_id("missing") + "/subnets/x"))
                ],
            ),
        ).result()
    assert reference.value.error.code == "InvalidResourceReference"
    with pytest.raises(ResourceNotFoundError):
        network.virtual_networks.get(GROUP, "nope")

    # delete in dependency order
    network.virtual_network_gateway_connections.begin_delete(GROUP, "to-onprem").result()
    network.local_network_gateways.begin_delete(GROUP, "onprem").result()
    network.virtual_network_gateways.begin_delete(GROUP, "vpn-gw").result()
    network.network_interfaces.begin_delete(GROUP, "vm-nic").result()
    for name in ("vm-ip", "gw-ip"):
        network.public_ip_addresses.begin_delete(GROUP, name).result()
    network.virtual_networks.begin_delete(GROUP, "vnet1").result()
    network.network_security_groups.begin_delete(GROUP, "web-nsg").result()
    assert list(network.virtual_networks.list(GROUP)) == []


def test_other_tenant_sees_nothing(live: Live, network: NetworkManagementClient) -> None:
    network.virtual_networks.begin_create_or_update(
        GROUP,
        "private",
        m.VirtualNetwork(location="local", address_space=m.AddressSpace(address_prefixes=["100.64.0.0/16"])),
    ).result()
    with client_for(live, live.tenant_b, SUB_A) as intruder, pytest.raises(HttpResponseError) as denied:
        intruder.virtual_networks.get(GROUP, "private")
    assert denied.value.status_code == 404
    with client_for(live, live.tenant_b, SUB_B) as own:
        assert list(own.virtual_networks.list_all()) == []
    network.virtual_networks.begin_delete(GROUP, "private").result()


def test_bgp_peer_status_and_routes_as_the_sdk_reads_them(live: Live, network: NetworkManagementClient) -> None:
    """A BGP connection whose gateway node (a fake one here) reports the session: the SDK's three BGP actions
    on the virtual network gateway, and nothing of it for another tenant."""
    network.virtual_networks.begin_create_or_update(
        GROUP,
        "bgp-vnet",
        m.VirtualNetwork(
            location="local",
            address_space=m.AddressSpace(address_prefixes=["100.64.0.0/16"]),
            subnets=[m.Subnet(name="GatewaySubnet", address_prefix="100.64.255.0/27")],
        ),
    ).result()
    gw_ip = network.public_ip_addresses.begin_create_or_update(
        GROUP, "bgp-gw-ip", m.PublicIPAddress(location="local")
    ).result()
    gateway = network.virtual_network_gateways.begin_create_or_update(
        GROUP,
        "bgp-gw",
        m.VirtualNetworkGateway(
            location="local",
            gateway_type="Vpn",
            vpn_type="RouteBased",
            sku=m.VirtualNetworkGatewaySku(name="Standard", tier="Standard"),
            enable_bgp=True,
            bgp_settings=m.BgpSettings(asn=4_200_000_000),
            ip_configurations=[
                m.VirtualNetworkGatewayIPConfiguration(
                    name="c",
                    subnet=m.SubResource(id=vnet_id("bgp-vnet") + "/subnets/GatewaySubnet"),
                    public_ip_address=m.SubResource(id=gw_ip.id),
                )
            ],
        ),
    ).result()
    assert gateway.bgp_settings.asn == 4_200_000_000 and gateway.bgp_settings.bgp_peering_address == "100.64.255.4"
    site = network.local_network_gateways.begin_create_or_update(
        GROUP,
        "bgp-site",
        m.LocalNetworkGateway(
            location="local",
            gateway_ip_address="198.51.100.30",
            local_network_address_space=m.AddressSpace(address_prefixes=["192.0.2.254/32"]),
            bgp_settings=m.BgpSettings(asn=65050, bgp_peering_address="192.0.2.254"),
        ),
    ).result()
    with pytest.raises(HttpResponseError) as reserved:
        network.local_network_gateways.begin_create_or_update(
            GROUP,
            "tor-asn",
            m.LocalNetworkGateway(location="local", gateway_ip_address="198.51.100.31",
                                  bgp_settings=m.BgpSettings(asn=23456, bgp_peering_address="192.0.2.253")),
        ).result()  # fmt: skip
    assert reserved.value.error.code == "BgpAsnReserved"
    connection = network.virtual_network_gateway_connections.begin_create_or_update(
        GROUP,
        "bgp-conn",
        m.VirtualNetworkGatewayConnection(
            location="local",
            connection_type="IPsec",
            shared_key="psk-bgp",
            enable_bgp=True,
            virtual_network_gateway1=m.VirtualNetworkGateway(id=gateway.id),
            local_network_gateway2=m.LocalNetworkGateway(id=site.id),
        ),
    ).result()
    assert connection.enable_bgp is True
    gateways = network.virtual_network_gateways
    [unknown] = gateways.begin_get_bgp_peer_status(GROUP, "bgp-gw").result().value
    assert (unknown.neighbor, unknown.asn, unknown.state) == ("192.0.2.254", 65050, "Unknown")

    http = httpx.Client(base_url=live.url, verify=str(live.ca))
    node = {"Authorization": f"Bearer {tokens.create(make_engine(live.db), 'node', 'sdk-gw1')}"}
    registration = {"role": "gateway", "address": "198.18.0.61"}
    assert http.post("/v1/nodes/sdk-gw1/register", headers=node, json=registration).status_code == 200
    peer = {
        "localAddress": "100.64.255.4",
        "neighbor": "192.0.2.254",
        "asn": 65050,
        "state": "Connected",
        "connectedDuration": "00:00:42.0000000",
        "routesReceived": 1,
        "messagesSent": 5,
        "messagesReceived": 6,
    }
    learned = {
        "localAddress": "100.64.255.4",
        "network": "192.0.2.0/25",
        "nextHop": "192.0.2.254",
        "sourcePeer": "192.0.2.254",
        "origin": "EBgp",
        "asPath": "65050",
        "weight": 0,
    }
    advertised = {"localAddress": "100.64.255.4", "network": "100.64.0.0/16", "nextHop": "100.64.255.4",
                  "origin": "Igp", "asPath": "4200000000", "weight": 0}  # fmt: skip
    bgp = {"peer": peer, "learnedRoutes": [learned], "learnedRoutesDropped": 0, "advertisedRoutes": [advertised]}
    report = {"appliedRevision": 1, "connections": {connection.id: {"connectionStatus": "Connected", "bgp": bgp}}}
    sent = http.post("/v1/nodes/sdk-gw1/status", headers=node, json=report)
    assert sent.status_code == 200, sent.text

    [status] = gateways.begin_get_bgp_peer_status(GROUP, "bgp-gw").result().value
    assert (status.local_address, status.neighbor, status.state, status.connected_duration) == (
        "100.64.255.4", "192.0.2.254", "Connected", "00:00:42.0000000")  # fmt: skip
    assert gateways.begin_get_bgp_peer_status(GROUP, "bgp-gw", peer="192.0.2.1").result().value == []
    routes = gateways.begin_get_learned_routes(GROUP, "bgp-gw").result().value
    assert [(r.network, r.origin) for r in routes] == [
        ("100.64.0.0/16", "Network"), ("192.0.2.254/32", "Network"), ("192.0.2.0/25", "EBgp")]  # fmt: skip
    assert routes[-1].next_hop == "192.0.2.254" and routes[-1].as_path == "65050"
    [out] = gateways.begin_get_advertised_routes(GROUP, "bgp-gw", peer="192.0.2.254").result().value
    assert (out.network, out.as_path, out.origin) == ("100.64.0.0/16", "4200000000", "Igp")
    with client_for(live, live.tenant_b, SUB_A) as intruder, pytest.raises(HttpResponseError) as denied:
        intruder.virtual_network_gateways.begin_get_learned_routes(GROUP, "bgp-gw").result()
    assert denied.value.status_code == 404 and "192.0.2.0/25" not in str(denied.value)

    network.virtual_network_gateway_connections.begin_delete(GROUP, "bgp-conn").result()
    network.local_network_gateways.begin_delete(GROUP, "bgp-site").result()
    network.virtual_network_gateways.begin_delete(GROUP, "bgp-gw").result()
    network.public_ip_addresses.begin_delete(GROUP, "bgp-gw-ip").result()
    network.virtual_networks.begin_delete(GROUP, "bgp-vnet").result()
