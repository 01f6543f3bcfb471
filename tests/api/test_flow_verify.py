"""IP flow verify through the API: the deciding rule for a 5-tuple at a NIC, in Azure's NSG order."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from isthmus.api.app import create_app
from isthmus.model.snapshot import FabricSettings
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from tests.conftest import SUB_A, SUB_B, Controller, net, rg, vnet_body

WATCHER = f"{rg()}/providers/Microsoft.Network/networkWatchers/NetworkWatcher_local/ipFlowVerify"


def _rule(name: str, priority: int, access: str, port: str, direction: str = "Inbound") -> dict[str, Any]:
    return {"name": name, "properties": {"priority": priority, "access": access, "direction": direction,
            "protocol": "Tcp", "sourceAddressPrefix": "*", "destinationAddressPrefix": "*",
            "sourcePortRange": "*", "destinationPortRange": port}}  # fmt: skip


def _world(c: Controller) -> str:
    nsg = net("networkSecurityGroups", "subnet-nsg")
    c.call("PUT", nsg, {"location": "local", "properties": {"securityRules": [
        _rule("allow-web", 100, "Allow", "80-443"), _rule("deny-8080", 200, "Deny", "8080")]}})  # fmt: skip
    nic_nsg = net("networkSecurityGroups", "nic-nsg")
    c.call(
        "PUT", nic_nsg, {"location": "local", "properties": {"securityRules": [_rule("deny-443", 100, "Deny", "443")]}}
    )
    body = vnet_body("100.64.0.0/16", subnets={"web": "100.64.1.0/24"})
    body["properties"]["subnets"][0]["properties"]["networkSecurityGroup"] = {"id": nsg}
    assert c.call("PUT", net("virtualNetworks", "vnet1"), body).status_code == 201
    nic = net("networkInterfaces", "nic1")
    config = {"name": "c1", "properties": {"subnet": {"id": f"{net('virtualNetworks', 'vnet1')}/subnets/web"}}}
    created = c.call("PUT", nic, {"location": "local", "properties": {
        "ipConfigurations": [config], "networkSecurityGroup": {"id": nic_nsg}}})  # fmt: skip
    assert created.status_code == 201, created.text
    return nic


def _ask(
    c: Controller, nic: str, port: int, direction: str = "Inbound", remote: str = "198.51.100.7", **extra: Any
) -> Any:
    body = {"targetResourceId": nic, "direction": direction, "protocol": "TCP", "localPort": str(port),
            "remotePort": "50000", "localIPAddress": "100.64.1.4", "remoteIPAddress": remote, **extra}  # fmt: skip
    return c.call("POST", WATCHER, body)


def test_the_deciding_rule_in_azure_order(seeded: Controller) -> None:
    nic = _world(seeded)
    answers = {port: _ask(seeded, nic, port).json() for port in (80, 443, 8080, 22)}
    assert answers[443]["access"] == "Deny" and answers[443]["ruleName"] == "securityRules/deny-443"
    assert answers[8080]["ruleName"] == "securityRules/deny-8080"
    assert answers[22]["ruleName"] == "defaultSecurityRules/DenyAllInBound"
    # Port 80: the subnet NSG allows it, then the NIC NSG has no allow rule: its DenyAllInBound decides.
    assert answers[80] == {"access": "Deny", "ruleName": "defaultSecurityRules/DenyAllInBound",
                           "networkSecurityGroup": net("networkSecurityGroups", "nic-nsg")}  # fmt: skip
    east_west = _ask(seeded, nic, 80, remote="100.64.1.5").json()
    assert east_west["access"] == "Allow" and east_west["ruleName"] == "defaultSecurityRules/AllowVnetInBound"
    out = _ask(seeded, nic, 5000, direction="Outbound").json()
    assert out["access"] == "Allow" and out["ruleName"] == "defaultSecurityRules/AllowInternetOutBound"


def test_bad_questions_are_400_and_other_tenants_nics_do_not_exist(seeded: Controller) -> None:
    nic = _world(seeded)
    for extra, target in (
        ({"protocol": "GRE"}, "protocol"),
        ({"localPort": "70000"}, "localPort"),
        ({"localPort": "٨٠"}, "localPort"),  # Arabic-Indic digits: not a port, though `int()` reads them
        ({"remotePort": "\uff18\uff10"}, "remotePort"),
        ({"remoteIPAddress": "not-an-ip"}, "remoteIPAddress"),
        ({"localIPAddress": "100.64.1.99"}, "localIPAddress"),
        ({"targetResourceId": f"{rg()}/providers/Microsoft.Network/virtualNetworks/vnet1"}, "targetResourceId"),
    ):
        answer = _ask(seeded, nic, 80, **extra)
        assert answer.status_code == 400, (extra, answer.text)
        assert answer.json()["error"]["target"] == target
    other = nic.replace(SUB_A, SUB_B)
    answer = _ask(seeded, nic, 80, targetResourceId=other)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidResourceReference"
    spy = seeded.call("POST", WATCHER.replace(SUB_A, SUB_B), {}, token=seeded.tenant_a)
    assert spy.status_code == 404


def test_the_azure_load_balancer_tag_is_the_controllers_setting(tmp_path: Path) -> None:
    """AzureLoadBalancer means the probe source the controller is configured with (default: the lab's)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'isthmus.db'}")
    upgrade(engine)
    probe = "198.18.255.200"
    with TestClient(create_app(engine, settings=FabricSettings((ip_network(f"{probe}/32"),)))) as client:
        tenants = [tokens.create(engine, "subscription", sub) for sub in (SUB_A, SUB_B)]
        c = Controller(engine, client, *tenants, tokens.create(engine, "operator", "operator"))
        assert c.call("PUT", rg(), {"location": "local"}, api_version="2024-11-01").status_code == 201
        nic = _world(c)
        assert _ask(c, nic, 22, remote=probe).json()["ruleName"] == "defaultSecurityRules/AllowAzureLoadBalancerInBound"
        assert _ask(c, nic, 22, remote="198.18.255.254").json()["ruleName"] == "defaultSecurityRules/DenyAllInBound"
    engine.dispose()
