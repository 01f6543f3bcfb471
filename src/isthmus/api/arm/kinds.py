"""The resource types the tenant API serves, by URL collection name."""

from isthmus.api.arm.gateways import Connections, LocalNetworkGateways, VirtualNetworkGateways
from isthmus.api.arm.kind import Kind
from isthmus.api.arm.network_interfaces import NetworkInterfaces
from isthmus.api.arm.public_ip_addresses import PublicIPAddresses
from isthmus.api.arm.security_groups import NetworkSecurityGroups
from isthmus.api.arm.virtual_networks import VirtualNetworks

KINDS: tuple[Kind, ...] = (
    VirtualNetworks(),
    NetworkSecurityGroups(),
    PublicIPAddresses(),
    NetworkInterfaces(),
    VirtualNetworkGateways(),
    LocalNetworkGateways(),
    Connections(),
)
BY_COLLECTION = {kind.collection.lower(): kind for kind in KINDS}
BY_TYPE = {kind.type.lower(): kind for kind in KINDS}
# Deleting a resource group removes its resources users-first, so nothing is deleted while in use.
DELETE_ORDER = (
    "connections",
    "virtualnetworkgateways",
    "localnetworkgateways",
    "networkinterfaces",
    "publicipaddresses",
    "virtualnetworks",
    "networksecuritygroups",
)
