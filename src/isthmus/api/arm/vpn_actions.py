"""The actions Azure's SDK has on a VPN connection and gateway, beyond its shared key (shared_key.py):

- POST …/connections/{name}/resetconnection: the carrying gateway tears the tunnel down and keys it anew
  (a counter in the stored connection that its document carries; the API never renders it);
- POST …/connections/{name}/getikesas: the IKE SAs the gateway last reported, as a JSON string (Azure's
  answer is a string too);
- POST …/connections/{name}/vpndeviceconfigurationscript: a swanctl.conf for a strongSwan site, with this
  connection's addresses, prefixes and proposals; the pre-shared key is left as a placeholder (only
  getSharedKey hands the key out);
- POST …/virtualNetworkGateways/{name}/supportedvpndevices: the devices that script knows (Azure's XML form).

Each is done when it answers: 200 with the result, or (resetconnection, whose poller takes only that) 202
with the completed operation's URLs.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from isthmus.api.arm import service
from isthmus.api.arm.kinds import BY_COLLECTION
from isthmus.api.arm.routes import async_headers
from isthmus.api.arm.shared_key import update_properties
from isthmus.api.deps import network_api_version, read, state, tenant, write
from isthmus.api.errors import bad_request
from isthmus.api.state import State
from isthmus.compile.gateway import RESET_GENERATION, ipsec_policy
from isthmus.model.ids import ResourceId
from isthmus.model.ipsec import DEFAULT_ESP, DEFAULT_IKE, esp_proposal, ike_proposal
from isthmus.model.snapshot import vnet_key_of
from isthmus.store.repo import Doc, Tx
from isthmus.store.tokens import Principal

router = APIRouter()
PROVIDER = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network"
CONNECTION = PROVIDER + "/connections/{name}"
GATEWAY = PROVIDER + "/virtualNetworkGateways/{name}"
CONNECTIONS = BY_COLLECTION["connections"]
GATEWAYS = BY_COLLECTION["virtualnetworkgateways"]
PUBLIC_IPS = BY_COLLECTION["publicipaddresses"]
DEVICE = ("strongSwan", "swanctl", "5.9")  # vendor, device family, firmware version
SUPPORTED = (
    f'<RpList><Vendor name="{DEVICE[0]}"><DeviceFamily name="{DEVICE[1]}">'
    f'<FirmwareVersion name="{DEVICE[2]}" /></DeviceFamily></Vendor></RpList>'
)


class VpnDeviceScriptParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor: str | None = Field(default=None, max_length=64)
    deviceFamily: str | None = Field(default=None, max_length=64)
    firmwareVersion: str | None = Field(default=None, max_length=64)


def _ipsec_connection(tx: Tx, subscription: str, group: str, name: str) -> Doc:
    service.check_name(name, "name")
    doc = service.get(tx, CONNECTIONS, ResourceId(subscription, group, "connections", name))
    if doc.body["properties"]["connectionType"] != "IPsec":
        raise bad_request("ConnectionTypeNotSupported", f"Connection {doc.name} is not an IPsec connection.")
    return doc


@router.post(CONNECTION + "/resetconnection", tags=["connections"],
             name="VirtualNetworkGatewayConnections_ResetConnection")  # fmt: skip
async def reset_connection(
    request: Request,
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> Response:
    """202 with the (already completed) operation's URLs: the SDK's poller for this call takes nothing else."""

    def work() -> Response:
        with write(st) as tx:
            doc = _ipsec_connection(tx, subscriptionId, resourceGroupName, name)
            update_properties(tx, doc, {RESET_GENERATION: int(doc.body["properties"].get(RESET_GENERATION, 0)) + 1})
            tx.event(doc.scope, "connections.reset", doc.body["id"], f"connection {doc.name} reset")
            headers = async_headers(request, tx, subscriptionId, doc.body["location"], doc.key)
        return Response(status_code=202, headers=headers)

    return await st.in_writer(work)


@router.post(CONNECTION + "/getikesas", tags=["connections"], name="VirtualNetworkGatewayConnections_GetIkeSas")
async def get_ike_sas(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        doc = _ipsec_connection(tx, subscriptionId, resourceGroupName, name)
        observed = tx.connection_status(doc.key) or {}
    return JSONResponse(json.dumps(observed.get("ikeSas", [])))


@router.post(CONNECTION + "/vpndeviceconfigurationscript", tags=["connections"],
             name="VirtualNetworkGateways_VpnDeviceConfigurationScript")  # fmt: skip
async def vpn_device_configuration_script(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    body: VpnDeviceScriptParameters = Body(),
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    for field, wanted in zip(("vendor", "deviceFamily", "firmwareVersion"), DEVICE, strict=True):
        given = getattr(body, field)
        if given is not None and given.lower() != wanted.lower():
            raise bad_request("VpnDeviceNotSupported", f"{field} {given} is not supported (see supportedvpndevices).",
                              field)  # fmt: skip
    with read(st) as tx:
        doc = _ipsec_connection(tx, subscriptionId, resourceGroupName, name)
        shared = st.progress.shared_address(doc.body["properties"]["virtualNetworkGateway1"]["id"].lower())
        script = swanctl_conf(tx, doc, shared)
    return JSONResponse(script)


@router.post(GATEWAY + "/supportedvpndevices", tags=["virtualNetworkGateways"],
             name="VirtualNetworkGateways_SupportedVpnDevices")  # fmt: skip
async def supported_vpn_devices(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        service.check_name(name, "name")
        service.get(tx, GATEWAYS, ResourceId(subscriptionId, resourceGroupName, "virtualNetworkGateways", name))
    return JSONResponse(SUPPORTED)


def swanctl_conf(tx: Tx, connection: Doc, shared: str | None = None) -> str:
    """The site's side of `connection` as a swanctl.conf: it initiates to the gateway's VIP, or to the public
    IP its pool shares (`shared`), which is then also the gateway's IKE identity."""
    props: dict[str, Any] = connection.body["properties"]
    gateway = tx.get(props["virtualNetworkGateway1"]["id"].lower())
    local = tx.get(props["localNetworkGateway2"]["id"].lower())
    assert gateway is not None and local is not None  # references are kept by the store
    config = gateway.body["properties"]["ipConfigurations"][0]["properties"]
    public_ip = tx.get(config["publicIPAddress"]["id"].lower())
    rendered = PUBLIC_IPS.render(tx, public_ip)["properties"] if public_ip else {}
    vip = shared or rendered.get("ipAddress") or "VIP-NOT-ALLOCATED"
    vnet = tx.get(vnet_key_of(config["subnet"]["id"]))
    space = vnet.body["properties"]["addressSpace"]["addressPrefixes"] if vnet else []
    site = local.body["properties"]
    policies = [ipsec_policy(p) for p in props.get("ipsecPolicies") or ()]
    ike = [ike_proposal(p) for p in policies] or list(DEFAULT_IKE)
    esp = [esp_proposal(p) for p in policies] or list(DEFAULT_ESP)
    me = site["gatewayIpAddress"]
    return f"""# swanctl.conf for the on-premises strongSwan of connection {connection.name} (generated by isthmus)
connections {{
  {connection.name} {{
    version = 2
    local_addrs = {me}
    remote_addrs = {vip}
    proposals = {", ".join(ike)}
    dpd_delay = {max(1, int(props.get("dpdTimeoutSeconds", 45)) // 3)}s
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {vip}
    }}
    children {{
      {connection.name} {{
        local_ts = {", ".join(site["localNetworkAddressSpace"]["addressPrefixes"])}
        remote_ts = {", ".join(space)}
        esp_proposals = {", ".join(esp)}
        dpd_action = restart
        start_action = start
      }}
    }}
  }}
}}
secrets {{
  ike-{connection.name} {{
    id-1 = {me}
    id-2 = {vip}
    secret = "PUT-THE-SHARED-KEY-HERE"  # getSharedKey gives it to the connection's owner
  }}
}}
"""
