"""IP flow verify for one NIC: which NSG rule decides a 5-tuple, as Azure's Network Watcher answers it.

Pure: the NIC, its virtual network and the NSGs come in as stored documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_network
from typing import Any

from isthmus.compile.security_rules import Flow, Verdict, compile_nsg, verify_flow
from isthmus.model.nsg import NsgContext, NsgProgram
from isthmus.model.snapshot import FabricSettings


def nsgs_of(nic: Mapping[str, Any], vnet: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(subnet NSG id, NIC NSG id) that guard the NIC's primary ipConfiguration."""
    props = nic["properties"]
    nic_nsg = props.get("networkSecurityGroup", {}).get("id")
    subnet_id = props["ipConfigurations"][0]["properties"]["subnet"]["id"].lower()
    subnet_nsg = None
    for subnet in (vnet or {}).get("properties", {}).get("subnets", []):
        if subnet["id"].lower() == subnet_id:
            subnet_nsg = subnet["properties"].get("networkSecurityGroup", {}).get("id")
    return subnet_nsg, nic_nsg


def verify_nic_flow(
    nic: Mapping[str, Any],
    vnet: Mapping[str, Any] | None,
    nsgs: Mapping[str, Mapping[str, Any]],
    flow: Flow,
    settings: FabricSettings,
) -> Verdict:
    """`nsgs`: stored NSG documents by lower-cased id (those `nsgs_of` names)."""
    space = tuple(
        ip_network(p) for p in (vnet or {}).get("properties", {}).get("addressSpace", {}).get("addressPrefixes", [])
    )
    context = NsgContext(space, settings.azure_load_balancer)

    def program(nsg_id: str | None) -> tuple[str, NsgProgram] | None:
        if nsg_id is None or nsg_id.lower() not in nsgs:
            return None
        return nsg_id, compile_nsg(nsgs[nsg_id.lower()]["properties"]["securityRules"], context)

    subnet_nsg, nic_nsg = nsgs_of(nic, vnet)
    return verify_flow(flow, program(subnet_nsg), program(nic_nsg))
