"""`make demo`: start a controller, let an operator and a tenant build a small cloud through the API,
and show what the CLI sees. (Later issues grow this into the whole lab in network namespaces.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from isthmus.lab.controller import controller_process
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade

console = Console()
SUBSCRIPTION = "5f2c0a4e-0000-4000-8000-00000000de00"
GROUP = "demo"
API = {"api-version": "2026-03-01"}


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        console.print(f"[red]{response.request.method} {response.request.url} -> {response.status_code}[/red]")
        console.print(response.text)
        raise SystemExit(1)
    return response.json() if response.content else {}


def operator_setup(op: httpx.Client) -> None:
    step("operator: public IP pool, hosts, MUXes, a 2+1 IPsec gateway pool")
    objects: list[tuple[str, dict[str, Any]]] = [
        ("publicIpPools/public", {"properties": {"addressPrefixes": ["203.0.113.0/24"]}}),
        ("hosts/host1", {"properties": {"node": "host1", "address": "198.18.0.11"}}),
        ("hosts/host2", {"properties": {"node": "host2", "address": "198.18.0.12"}}),
        (
            "loadBalancerMuxes/mux1",
            {
                "properties": {
                    "node": "mux1",
                    "asn": 65101,
                    "routerId": "198.18.0.21",
                    "peers": [{"address": "198.18.0.1", "asn": 65100}],
                }
            },
        ),
        (
            "gatewayPools/ipsec-100",
            {
                "properties": {
                    "type": "S2sIpsec",
                    "redundantGatewayCount": 1,
                    "gatewayCapacityKbps": 1_000_000,
                    "tierBandwidthKbps": 100_000,
                }
            },
        ),
        *[(f"gateways/gw{i}", {"properties": {"node": f"gw{i}", "pool": "ipsec-100"}}) for i in (1, 2, 3)],
    ]
    for path, body in objects:
        check(op.put(f"/admin/{path}", json=body))
        console.print(f"  PUT /admin/{path}")


def tenant_setup(t: httpx.Client) -> None:
    step("tenant: resource group, VNet, NSG, public IP, NIC, VPN gateway, site, IPsec connection")
    base = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network"
    vnet = f"{base}/virtualNetworks/vnet1"
    check(
        t.put(
            f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}",
            params={"api-version": "2024-11-01"},
            json={"location": "local"},
        )
    )
    resources: list[tuple[str, dict[str, Any]]] = [
        (
            f"{base}/networkSecurityGroups/web-nsg",
            {
                "location": "local",
                "properties": {
                    "securityRules": [
                        {
                            "name": "allow-ssh",
                            "properties": {
                                "protocol": "Tcp",
                                "sourcePortRange": "*",
                                "destinationPortRange": "22",
                                "sourceAddressPrefix": "198.51.100.0/24",
                                "destinationAddressPrefix": "*",
                                "access": "Allow",
                                "priority": 100,
                                "direction": "Inbound",
                            },
                        },
                        {
                            "name": "allow-web",
                            "properties": {
                                "protocol": "Tcp",
                                "sourcePortRange": "*",
                                "destinationPortRanges": ["80", "443"],
                                "sourceAddressPrefix": "Internet",
                                "destinationAddressPrefix": "VirtualNetwork",
                                "access": "Allow",
                                "priority": 110,
                                "direction": "Inbound",
                            },
                        },
                    ]
                },
            },
        ),
        (
            vnet,
            {
                "location": "local",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
                    "subnets": [
                        {
                            "name": "web",
                            "properties": {
                                "addressPrefix": "100.64.1.0/24",
                                "networkSecurityGroup": {"id": f"{base}/networkSecurityGroups/web-nsg"},
                            },
                        },
                        {"name": "GatewaySubnet", "properties": {"addressPrefix": "100.64.255.0/27"}},
                    ],
                },
            },
        ),
        (
            f"{base}/publicIPAddresses/web-ip",
            {
                "location": "local",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        ),
        (
            f"{base}/networkInterfaces/web-nic",
            {
                "location": "local",
                "properties": {
                    "ipConfigurations": [
                        {
                            "name": "ipconfig1",
                            "properties": {
                                "subnet": {"id": f"{vnet}/subnets/web"},
                                "publicIPAddress": {"id": f"{base}/publicIPAddresses/web-ip"},
                            },
                        }
                    ]
                },
            },
        ),
        (f"{base}/publicIPAddresses/gw-ip", {"location": "local"}),
        (
            f"{base}/virtualNetworkGateways/vpn",
            {
                "location": "local",
                "properties": {
                    "gatewayType": "Vpn",
                    "vpnType": "RouteBased",
                    "sku": {"name": "Standard"},
                    "ipConfigurations": [
                        {
                            "name": "gwip",
                            "properties": {
                                "subnet": {"id": f"{vnet}/subnets/GatewaySubnet"},
                                "publicIPAddress": {"id": f"{base}/publicIPAddresses/gw-ip"},
                            },
                        }
                    ],
                },
            },
        ),
        (
            f"{base}/localNetworkGateways/branch",
            {
                "location": "local",
                "properties": {
                    "gatewayIpAddress": "198.51.100.20",
                    "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
                },
            },
        ),
        (
            f"{base}/connections/to-branch",
            {
                "location": "local",
                "properties": {
                    "connectionType": "IPsec",
                    "sharedKey": "demo-pre-shared-key",
                    "virtualNetworkGateway1": {"id": f"{base}/virtualNetworkGateways/vpn"},
                    "localNetworkGateway2": {"id": f"{base}/localNetworkGateways/branch"},
                },
            },
        ),
    ]
    for path, body in resources:
        doc = check(t.put(path, params=API, json=body))
        console.print(f"  PUT {doc['type']}/{doc['name']}: {doc['properties']['provisioningState']}")
    bad = t.put(
        f"{base}/networkSecurityGroups/bad",
        params=API,
        json={
            "location": "local",
            "properties": {
                "securityRules": [
                    {
                        "name": "r",
                        "properties": {
                            "protocol": "Tcp",
                            "sourcePortRange": "*",
                            "destinationPortRange": "22",
                            "sourceAddressPrefix": "*",
                            "destinationAddressPrefix": "*",
                            "access": "Allow",
                            "priority": 50,
                            "direction": "Inbound",
                        },
                    }
                ]
            },
        },
    )
    console.print(f"  a bad request is refused, nothing stored: {bad.status_code} {bad.json()['error']}")
    got = check(t.get(f"{base}/connections/to-branch", params=API))
    console.print(f"  the pre-shared key is write-only: 'sharedKey' in GET = {'sharedKey' in got['properties']}")


def cli(env: dict[str, str], *args: str) -> None:
    console.print(f"[dim]$ isthmus {' '.join(args)}[/dim]")
    subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, check=True)


def main() -> None:
    workdir = Path("var/demo")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db = f"sqlite:///{workdir / 'isthmus.db'}"
    engine = make_engine(db)
    upgrade(engine)
    operator_token = tokens.create(engine, "operator", "operator")
    tenant_token = tokens.create(engine, "subscription", SUBSCRIPTION)
    engine.dispose()
    with controller_process(db, workdir) as controller:
        url, ca = controller.url, controller.ca
        step(f"controller on {url} (HTTPS, CA {ca}), store {db}")
        with httpx.Client(base_url=url, verify=str(ca), headers={"Authorization": f"Bearer {operator_token}"}) as op:
            operator_setup(op)
        with httpx.Client(base_url=url, verify=str(ca), headers={"Authorization": f"Bearer {tenant_token}"}) as t:
            tenant_setup(t)
        step("what the CLI shows")
        env = {**os.environ, "ISTHMUS_CONTROLLER": url, "ISTHMUS_CA": str(ca)}
        tenant_env = {**env, "ISTHMUS_TOKEN": tenant_token, "ISTHMUS_SUBSCRIPTION": SUBSCRIPTION}
        operator_env = {**env, "ISTHMUS_TOKEN": operator_token}
        cli(tenant_env, "vnet", "list")
        cli(tenant_env, "publicip", "list")
        cli(tenant_env, "nsg", "show", "web-nsg", "--group", GROUP)
        cli(operator_env, "pool", "list")
        cli(operator_env, "placement")
        cli(operator_env, "events", "--limit", "8")
    step("done: the controller is stopped; its store stays in var/demo/")


if __name__ == "__main__":
    main()
