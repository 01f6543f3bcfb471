"""Operator objects, after the Windows Server Network Controller's northbound API.

Each is {"properties": {...}, "tags": {...}} at /admin/{collection}/{name}.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
DRAINING = "Draining"  # a gateway's serviceState while its load moves away (next to model.placement's two)
DRAIN_ENDS = ("drain.done", "drain.stopped")  # the events that end a drain (api/admin/moves.py writes them)


def drain_ended(gateway: str) -> Callable[[dict[str, Any]], bool]:
    """Whether an event (as /admin/events serves it) ends the drain of `gateway`."""
    subject = f"/admin/gateways/{gateway}".lower()
    return lambda event: event["kind"] in DRAIN_ENDS and event["subject"].lower() == subject


class AdminModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ip(value: str) -> str:
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address") from None


IPAddressText = Annotated[str, AfterValidator(_ip)]


class GatewayPoolProperties(AdminModel):
    type: Literal["All", "S2sIpsec", "S2sGre", "Forwarding"]
    redundantGatewayCount: int = Field(default=1, ge=0, le=16)
    gatewayCapacityKbps: int = Field(gt=0, le=100_000_000)
    tierBandwidthKbps: int = Field(gt=0, le=100_000_000)  # what one connection of this pool is sold at
    # Further tiers the pool is sold at: a gateway whose SKU changes between them stays, retiered in place.
    additionalTiersKbps: list[Annotated[int, Field(gt=0, le=100_000_000)]] = Field(default_factory=list, max_length=8)
    # One public IP for all pools (Windows Server SDN's shared VIP; isthmus extension): every IKEv2 and GRE
    # endpoint of the pool answers on it; pools that name the same address share it. Static: the address given
    # (from a public IP pool); Dynamic: one the controller allocates (kept while the pool keeps Dynamic).
    publicIpAddress: IPAddressText | None = None
    publicIpAllocationMethod: Literal["Static", "Dynamic"] | None = None
    provisioningState: str | None = None


class GatewayProperties(AdminModel):
    node: str = Field(pattern=NAME_PATTERN)
    pool: str = Field(pattern=NAME_PATTERN)
    # The operator's intent. OutOfService moves what the gateway carries away at once (a takeover) and gives
    # it nothing new; Draining (set by POST .../drain, api/admin/moves.py) keeps what it carries, gives it
    # nothing new and moves its load away one VNet gateway at a time, then becomes OutOfService.
    serviceState: Literal["InService", "Draining", "OutOfService"] = "InService"
    drainForced: bool | None = None  # read-only: the drain was asked with force (it may strand connections)
    provisioningState: str | None = None


class FailoverRequest(AdminModel):
    """POST /admin/placement/failover: the virtual network gateway a drill moves (its ARM id)."""

    virtualNetworkGateway: str = Field(min_length=1, max_length=1024)


class BgpPeer(AdminModel):
    address: IPAddressText
    asn: int = Field(ge=1, le=4294967295)


class LoadBalancerMuxProperties(AdminModel):
    node: str = Field(pattern=NAME_PATTERN)
    asn: int = Field(ge=1, le=4294967295)
    routerId: str
    peers: list[BgpPeer] = Field(default_factory=list)
    provisioningState: str | None = None

    @field_validator("routerId")
    @classmethod
    def _router_id(cls, value: str) -> str:
        if not isinstance(ip_address(_ip(value)), IPv4Address):
            raise ValueError("a router id is an IPv4 address")
        return value


class HostProperties(AdminModel):
    node: str = Field(pattern=NAME_PATTERN)
    address: IPAddressText  # underlay (VTEP) address
    outboundNatAddress: str | None = None  # read-only: allocated by the controller
    provisioningState: str | None = None


class PublicIpPoolProperties(AdminModel):
    addressPrefixes: list[str] = Field(min_length=1)
    provisioningState: str | None = None

    @field_validator("addressPrefixes")
    @classmethod
    def _prefixes(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            try:
                out.append(str(ip_network(value, strict=True)))
            except ValueError:
                raise ValueError(f"'{value}' is not a prefix in CIDR notation") from None
        return out


class PortBindingProperties(AdminModel):
    """Which host a NIC's VM runs on (what a compute scheduler tells the network controller)."""

    networkInterface: str
    host: str = Field(pattern=NAME_PATTERN)
    provisioningState: str | None = None


class AdminObject(AdminModel):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    etag: str | None = None
    tags: dict[str, str] | None = None


class GatewayPool(AdminObject):
    properties: GatewayPoolProperties


class Gateway(AdminObject):
    properties: GatewayProperties


class LoadBalancerMux(AdminObject):
    properties: LoadBalancerMuxProperties


class Host(AdminObject):
    properties: HostProperties


class PublicIpPool(AdminObject):
    properties: PublicIpPoolProperties


class PortBinding(AdminObject):
    properties: PortBindingProperties
