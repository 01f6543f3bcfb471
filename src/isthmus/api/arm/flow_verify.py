"""Network Watcher's IP flow verify: POST …/networkWatchers/{name}/ipFlowVerify answers Allow or Deny and
the deciding rule for a 5-tuple at a NIC, from the stored NSGs (compile/flow_verify.py), without touching
Linux. `targetResourceId` may be the NIC itself (isthmus has no VM resources) or a VM with
`targetNicResourceId`.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

from ipaddress import ip_address
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from isthmus.api.arm.addressing import PUBLIC
from isthmus.api.deps import network_api_version, read, state, tenant
from isthmus.api.errors import ArmError, bad_request
from isthmus.api.state import State
from isthmus.compile.flow_verify import nsgs_of, verify_nic_flow
from isthmus.compile.security_rules import Flow
from isthmus.model.ids import RESOURCE_NAME, parse
from isthmus.model.snapshot import vnet_key_of
from isthmus.store.repo import Tx
from isthmus.store.tokens import Principal

router = APIRouter()
PATH = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network"
    "/networkWatchers/{networkWatcherName}/ipFlowVerify"
)
PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp"}


class VerificationIPFlowParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targetResourceId: str = Field(max_length=1024)
    direction: Literal["Inbound", "Outbound"]
    protocol: str = Field(max_length=8)
    localPort: str = Field(max_length=5)
    remotePort: str = Field(max_length=5)
    localIPAddress: str = Field(max_length=64)
    remoteIPAddress: str = Field(max_length=64)
    targetNicResourceId: str | None = Field(default=None, max_length=1024)


@router.post(PATH, tags=["networkWatchers"], name="NetworkWatchers_VerifyIPFlow")
async def verify_ip_flow(
    subscriptionId: str,
    resourceGroupName: str,
    networkWatcherName: str,
    body: VerificationIPFlowParameters = Body(),
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    if not RESOURCE_NAME.match(networkWatcherName):
        raise bad_request("InvalidResourceName", f"'{networkWatcherName}' is not a valid name.", "networkWatcherName")
    protocol = PROTOCOLS.get(body.protocol.lower())
    if protocol is None:
        raise bad_request("InvalidRequestFormat", "protocol is TCP, UDP or ICMP.", "protocol")
    ports = []
    for field in ("localPort", "remotePort"):
        text = getattr(body, field)
        if not (text.isascii() and text.isdigit()) or int(text) > 65535:
            raise bad_request("InvalidRequestFormat", f"{field} is one port, 0-65535.", field)
        ports.append(int(text))
    addresses = []
    for field in ("localIPAddress", "remoteIPAddress"):
        try:
            addresses.append(ip_address(getattr(body, field)))
        except ValueError:
            raise bad_request("InvalidIPAddress", f"{field} is not an IP address.", field) from None
    if addresses[0].version != addresses[1].version:
        raise bad_request("InvalidRequestFormat", "Both addresses must be of one IP version.", "remoteIPAddress")
    field = "targetNicResourceId" if body.targetNicResourceId else "targetResourceId"
    nic_id = parse(body.targetNicResourceId or body.targetResourceId)
    missing = bad_request("InvalidResourceReference", "The target network interface was not found.", field)
    if nic_id is None or nic_id.collection.lower() != "networkinterfaces" or nic_id.child_collection:
        raise bad_request("InvalidResourceReference", f"{field} must be a networkInterfaces id.", field)
    if nic_id.subscription.lower() != subscriptionId.lower():
        raise missing  # another subscription's resources do not exist for this caller

    def work() -> JSONResponse:  # compiles NSGs: not on the event loop
        with read(st) as tx:
            nic = tx.get(nic_id.key)
            if nic is None:
                raise missing
            configs = nic.body["properties"]["ipConfigurations"]
            if str(addresses[0]) not in {c["properties"].get("privateIPAddress") for c in configs}:
                raise _not_a_private_address(tx, configs, str(addresses[0]))
            vnet = tx.get(vnet_key_of(configs[0]["properties"]["subnet"]["id"]))
            vnet_body = vnet.body if vnet else None
            nsgs = {}
            for nsg_id in nsgs_of(nic.body, vnet_body):
                if nsg_id:
                    doc = tx.get(nsg_id.lower())
                    if doc is not None:
                        nsgs[nsg_id.lower()] = doc.body
        local, remote = (addresses[0], ports[0]), (addresses[1], ports[1])
        source, destination = (remote, local) if body.direction == "Inbound" else (local, remote)
        flow = Flow(body.direction, protocol, source[0], source[1], destination[0], destination[1])
        verdict = verify_nic_flow(nic.body, vnet_body, nsgs, flow, st.settings)
        result = {"access": verdict.access, "ruleName": verdict.rule_name}
        if verdict.nsg:
            result["networkSecurityGroup"] = verdict.nsg
        return JSONResponse(result)

    return await run_in_threadpool(work)


def _not_a_private_address(tx: Tx, configs: list[dict[str, Any]], local: str) -> ArmError:
    """localIPAddress is none of the NIC's private addresses: if it is the public IP of one of its
    ipConfigurations, say which private address it maps to (flows are judged where the NSG sees them)."""
    for config in configs:
        props = config["properties"]
        pip = props.get("publicIPAddress")
        held = tx.addresses_of(pip["id"].lower()) if pip else {}
        if held.get(local) == PUBLIC:
            return bad_request(
                "InvalidRequestFormat",
                f"localIPAddress {local} is the public IP address of ipConfiguration {config['name']}, which maps "
                f"it to the NIC's private address {props.get('privateIPAddress')}: give that address, where the "
                "network security groups see the flow.",
                "localIPAddress",
            )
    privates = ", ".join(str(c["properties"].get("privateIPAddress")) for c in configs)
    return bad_request(
        "InvalidRequestFormat",
        f"localIPAddress {local} is not an address of the NIC (its private addresses: {privates}).",
        "localIPAddress",
    )
