"""Request schemas of the tenant API (Microsoft.Network subset), as Azure names them.

Every model forbids unknown fields, so a typo is an error naming the field. Read-only fields that
Azure returns (provisioningState, resourceGuid, etag, back-references…) are accepted and ignored, so a
client may PUT back what it got from a GET, as azure-mgmt-network does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from isthmus.model import limits

Tags = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=limits.TAG_NAME_LENGTH)],
        Annotated[str, StringConstraints(max_length=limits.TAG_VALUE_LENGTH)],
    ],
    Field(max_length=limits.TAGS_PER_RESOURCE),
]


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubResource(Arm):
    id: str


class ReadOnly(Arm):
    """Fields a GET returns and a PUT may carry back; the server ignores them."""

    provisioningState: str | None = None
    resourceGuid: str | None = None


class Envelope(Arm):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    etag: str | None = None
    location: str | None = None
    tags: Tags | None = None


class ChildEnvelope(Arm):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    etag: str | None = None


# --- virtual networks ---------------------------------------------------------------------------


class AddressSpace(Arm):
    addressPrefixes: list[str] = Field(default_factory=list)


class DhcpOptions(Arm):
    dnsServers: list[str] = Field(default_factory=list)


class SubnetProperties(ReadOnly):
    addressPrefix: str | None = None
    addressPrefixes: list[str] | None = None
    networkSecurityGroup: SubResource | None = None
    routeTable: SubResource | None = None
    natGateway: SubResource | None = None
    serviceEndpoints: list[dict[str, Any]] | None = None
    delegations: list[dict[str, Any]] | None = None
    privateEndpointNetworkPolicies: str | None = None
    privateLinkServiceNetworkPolicies: str | None = None
    defaultOutboundAccess: bool | None = None
    ipConfigurations: list[SubResource] | None = None
    purpose: str | None = None


class Subnet(ChildEnvelope):
    properties: SubnetProperties = Field(default_factory=SubnetProperties)


class VirtualNetworkProperties(ReadOnly):
    addressSpace: AddressSpace | None = None
    subnets: list[Subnet] = Field(default_factory=list)
    dhcpOptions: DhcpOptions | None = None
    enableDdosProtection: bool | None = None
    enableVmProtection: bool | None = None
    flowTimeoutInMinutes: int | None = Field(default=None, ge=4, le=30)
    virtualNetworkPeerings: list[dict[str, Any]] | None = None


class VirtualNetwork(Envelope):
    properties: VirtualNetworkProperties = Field(default_factory=VirtualNetworkProperties)


# --- network security groups ---------------------------------------------------------------------


class NetworkSecurityGroupProperties(ReadOnly):
    securityRules: list[dict[str, Any]] = Field(default_factory=list)  # checked by api.arm.security_rules
    defaultSecurityRules: list[dict[str, Any]] | None = None
    flushConnection: bool | None = None
    subnets: list[SubResource] | None = None
    networkInterfaces: list[SubResource] | None = None


class NetworkSecurityGroup(Envelope):
    properties: NetworkSecurityGroupProperties = Field(default_factory=NetworkSecurityGroupProperties)


class SecurityRule(ChildEnvelope):
    properties: dict[str, Any] = Field(default_factory=dict)  # checked by api.arm.security_rules


# --- public IP addresses ---------------------------------------------------------------------------


class Sku(Arm):
    name: str | None = None
    tier: str | None = None


class PublicIPAddressDnsSettings(Arm):
    domainNameLabel: str | None = None
    fqdn: str | None = None
    reverseFqdn: str | None = None


class PublicIPAddressProperties(ReadOnly):
    publicIPAllocationMethod: Literal["Static", "Dynamic"] | None = None
    publicIPAddressVersion: Literal["IPv4", "IPv6"] | None = None
    idleTimeoutInMinutes: int | None = Field(default=None, ge=4, le=30)
    dnsSettings: PublicIPAddressDnsSettings | None = None
    ipAddress: str | None = None
    ipConfiguration: SubResource | None = None
    ipTags: list[dict[str, str]] | None = None


class PublicIPAddress(Envelope):
    sku: Sku | None = None
    zones: list[str] | None = None
    properties: PublicIPAddressProperties = Field(default_factory=PublicIPAddressProperties)


# --- network interfaces ---------------------------------------------------------------------------


class IPConfigurationProperties(ReadOnly):
    subnet: SubResource | None = None
    privateIPAddress: str | None = None
    privateIPAllocationMethod: Literal["Static", "Dynamic"] | None = None
    privateIPAddressVersion: Literal["IPv4", "IPv6"] | None = None
    publicIPAddress: SubResource | None = None
    primary: bool | None = None
    loadBalancerBackendAddressPools: list[SubResource] | None = None
    applicationSecurityGroups: list[SubResource] | None = None


class NetworkInterfaceIPConfiguration(ChildEnvelope):
    properties: IPConfigurationProperties = Field(default_factory=IPConfigurationProperties)


class NetworkInterfaceDnsSettings(Arm):
    dnsServers: list[str] = Field(default_factory=list, max_length=limits.DNS_SERVERS_PER_VNET)
    internalDnsNameLabel: str | None = None


class NetworkInterfaceProperties(ReadOnly):
    ipConfigurations: list[NetworkInterfaceIPConfiguration] = Field(
        default_factory=list, max_length=limits.IP_CONFIGURATIONS_PER_NIC
    )
    networkSecurityGroup: SubResource | None = None
    dnsSettings: NetworkInterfaceDnsSettings | None = None
    enableIPForwarding: bool | None = None
    enableAcceleratedNetworking: bool | None = None
    macAddress: str | None = None
    primary: bool | None = None
    virtualMachine: SubResource | None = None
    nicType: str | None = None


class NetworkInterface(Envelope):
    properties: NetworkInterfaceProperties = Field(default_factory=NetworkInterfaceProperties)


# --- virtual network gateways, local network gateways, connections ----------------------------------


class BgpSettings(Arm):
    asn: int | None = Field(default=None, ge=1, le=4294967295)
    bgpPeeringAddress: str | None = None
    peerWeight: int | None = Field(default=None, ge=0, le=100)
    bgpPeeringAddresses: list[dict[str, Any]] | None = None


class GatewayIPConfigurationProperties(ReadOnly):
    subnet: SubResource | None = None
    publicIPAddress: SubResource | None = None
    privateIPAllocationMethod: Literal["Static", "Dynamic"] | None = None
    privateIPAddress: str | None = None


class GatewayIPConfiguration(ChildEnvelope):
    properties: GatewayIPConfigurationProperties = Field(default_factory=GatewayIPConfigurationProperties)


class VirtualNetworkGatewaySku(Arm):
    name: str | None = None
    tier: str | None = None
    capacity: int | None = None


class VirtualNetworkGatewayProperties(ReadOnly):
    gatewayType: Literal["Vpn", "ExpressRoute", "LocalGateway"] | None = None
    vpnType: Literal["RouteBased", "PolicyBased"] | None = None
    vpnGatewayGeneration: str | None = None
    sku: VirtualNetworkGatewaySku | None = None
    ipConfigurations: list[GatewayIPConfiguration] = Field(default_factory=list)
    enableBgp: bool | None = None
    activeActive: bool | None = None
    bgpSettings: BgpSettings | None = None
    gatewayDefaultSite: SubResource | None = None
    enablePrivateIpAddress: bool | None = None
    disableIPSecReplayProtection: bool | None = None
    inboundDnsForwardingEndpoint: str | None = None


class VirtualNetworkGateway(Envelope):
    extendedLocation: dict[str, Any] | None = None
    properties: VirtualNetworkGatewayProperties = Field(default_factory=VirtualNetworkGatewayProperties)


class LocalNetworkGatewayProperties(ReadOnly):
    localNetworkAddressSpace: AddressSpace | None = None
    gatewayIpAddress: str | None = None
    fqdn: str | None = None
    bgpSettings: BgpSettings | None = None


class LocalNetworkGateway(Envelope):
    properties: LocalNetworkGatewayProperties = Field(default_factory=LocalNetworkGatewayProperties)


class IpsecPolicy(Arm):
    saLifeTimeSeconds: int = Field(ge=300, le=172799)
    saDataSizeKilobytes: int = Field(ge=1024, le=2147483647)
    ipsecEncryption: Literal["None", "DES", "DES3", "AES128", "AES192", "AES256", "GCMAES128", "GCMAES192", "GCMAES256"]
    ipsecIntegrity: Literal["MD5", "SHA1", "SHA256", "GCMAES128", "GCMAES192", "GCMAES256"]
    ikeEncryption: Literal["DES", "DES3", "AES128", "AES192", "AES256", "GCMAES256", "GCMAES128"]
    ikeIntegrity: Literal["MD5", "SHA1", "SHA256", "SHA384", "GCMAES256", "GCMAES128"]
    dhGroup: Literal["None", "DHGroup1", "DHGroup2", "DHGroup14", "DHGroup2048", "ECP256", "ECP384", "DHGroup24"]
    pfsGroup: Literal["None", "PFS1", "PFS2", "PFS2048", "ECP256", "ECP384", "PFS24", "PFS14", "PFSMM"]


class GreSettings(Arm):
    """isthmus extension (connectionType "GRE"): a GRE tunnel to localNetworkGateway2.gatewayIpAddress."""

    key: int | None = Field(default=None, ge=0, le=4294967295)
    tunnelAddress: str | None = None  # this side's inner address with prefix, e.g. 198.19.0.1/30
    remoteTunnelAddress: str | None = None  # the remote's inner address, e.g. 198.19.0.2
    checksum: bool | None = None  # RFC 2784 checksums on the tunnel's packets


class L3ForwardingSettings(Arm):
    """isthmus extension (connectionType "L3"): routed, unencapsulated leg towards a next hop."""

    localAddress: str | None = None  # the gateway's address on the link network, e.g. 198.19.1.1/30
    nextHop: str | None = None  # the peer router on that link, e.g. 198.19.1.2
    vlanId: int | None = Field(default=None, ge=1, le=4094)  # the provider network's VLAN for the link


class TrafficSelectorPolicy(Arm):
    localAddressRanges: list[str] = Field(min_length=1, max_length=limits.TRAFFIC_SELECTOR_RANGES)
    remoteAddressRanges: list[str] = Field(min_length=1, max_length=limits.TRAFFIC_SELECTOR_RANGES)


class ConnectionProperties(ReadOnly):
    connectionType: Literal["IPsec", "Vnet2Vnet", "ExpressRoute", "VPNClient", "GRE", "L3"] | None = None
    virtualNetworkGateway1: dict[str, Any] | None = None
    virtualNetworkGateway2: dict[str, Any] | None = None
    localNetworkGateway2: dict[str, Any] | None = None
    connectionProtocol: Literal["IKEv2", "IKEv1"] | None = None
    sharedKey: str | None = Field(default=None, min_length=1, max_length=128)
    routingWeight: int | None = Field(default=None, ge=0, le=32000)
    dpdTimeoutSeconds: int | None = Field(default=None, ge=9, le=3600)
    connectionMode: Literal["Default", "ResponderOnly", "InitiatorOnly"] | None = None
    enableBgp: bool | None = None
    usePolicyBasedTrafficSelectors: bool | None = None
    useLocalAzureIpAddress: bool | None = None
    expressRouteGatewayBypass: bool | None = None
    ipsecPolicies: list[IpsecPolicy] = Field(default_factory=list, max_length=1)
    trafficSelectorPolicies: list[TrafficSelectorPolicy] = Field(
        default_factory=list, max_length=limits.TRAFFIC_SELECTOR_POLICIES
    )
    greSettings: GreSettings | None = None
    l3ForwardingSettings: L3ForwardingSettings | None = None
    connectionStatus: str | None = None
    ingressBytesTransferred: int | None = None
    egressBytesTransferred: int | None = None
    tunnelConnectionStatus: list[dict[str, Any]] | None = None
    lastConnectionEstablishedUtcTime: str | None = None
    connectionStatusReason: str | None = None  # isthmus: why it is not connected


class Connection(Envelope):
    properties: ConnectionProperties = Field(default_factory=ConnectionProperties)


class ResourceGroup(Arm):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    location: str | None = None
    managedBy: str | None = None
    tags: Tags | None = None
    properties: dict[str, Any] | None = None


class TagsObject(Arm):
    tags: Tags | None = None
