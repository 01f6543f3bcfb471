"""The `isthmus` command line against a real controller: tokens, PKI, read commands as tables and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from isthmus.linux.capabilities import Capabilities
from isthmus.linux.datapath import registration_capabilities
from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.e2e.conftest import SUB_A, Live


def isthmus(live: Live, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ISTHMUS_CONTROLLER": live.url,
        "ISTHMUS_CA": str(live.ca),
        "ISTHMUS_TOKEN": token,
        "COLUMNS": "200",
    }
    return subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, capture_output=True, text=True, timeout=60)


def test_read_commands(live: Live) -> None:
    http = httpx.Client(base_url=live.url, verify=str(live.ca))
    operator = {"Authorization": f"Bearer {live.operator}"}
    tenant = {"Authorization": f"Bearer {live.tenant_a}"}
    http.put(
        "/admin/gatewayPools/cli-pool",
        headers=operator,
        json={
            "properties": {
                "type": "All",
                "redundantGatewayCount": 1,
                "gatewayCapacityKbps": 500_000,
                "tierBandwidthKbps": 100_000,
            }
        },
    )
    http.put(
        f"/subscriptions/{SUB_A}/resourcegroups/cli",
        params={"api-version": "2024-11-01"},
        headers=tenant,
        json={"location": "local"},
    )
    http.put(
        f"/subscriptions/{SUB_A}/resourceGroups/cli/providers/Microsoft.Network/virtualNetworks/cli-net",
        params={"api-version": "2026-03-01"},
        headers=tenant,
        json={"location": "local", "properties": {"addressSpace": {"addressPrefixes": ["100.64.0.0/24"]}}},
    )

    table = isthmus(live, live.tenant_a, "vnet", "list", "-s", SUB_A)
    assert table.returncode == 0, table.stderr
    assert "cli-net" in table.stdout and "100.64.0.0/24" in table.stdout
    as_json = isthmus(live, live.tenant_a, "--output", "json", "vnet", "list", "-s", SUB_A)
    assert "cli-net" in [v["name"] for v in json.loads(as_json.stdout)]
    pools = json.loads(isthmus(live, live.operator, "-o", "json", "pool", "list").stdout)
    assert "cli-pool" in [p["name"] for p in pools]
    placement = json.loads(isthmus(live, live.operator, "-o", "json", "placement").stdout)
    assert set(placement) == {"pools", "placed", "unplaced"}
    assert isthmus(live, live.operator, "events").returncode == 0
    latest = json.loads(isthmus(live, live.operator, "-o", "json", "events", "--limit", "1").stdout)
    assert len(latest) == 1 and latest[0]["kind"] == "virtualNetworks.created"  # the newest, not the first
    node = {"Authorization": f"Bearer {tokens.create(make_engine(live.db), 'node', 'cli-host')}"}
    probed = Capabilities(kernel="6.1.0-cli", esp=True, gre=False, vlan=True, vrf=True, netem=False, vxlan=True,
                          nft=True, nft_flowtable=True)  # fmt: skip
    body = {"role": "host", "address": "198.18.0.90", "capabilities": registration_capabilities(probed)}
    registered = http.post("/v1/nodes/cli-host/register", headers=node, json=body)
    assert registered.status_code == 200
    nodes = isthmus(live, live.operator, "--wide", "node", "list")
    assert "cli-host" in nodes.stdout and "live" in nodes.stdout
    assert "flowtable,nftables,gre_tun,xfrm,vxlan,8021q" in nodes.stdout, nodes.stdout
    shown = isthmus(live, live.operator, "node", "show", "cli-host")
    assert shown.returncode == 0, shown.stderr
    lines = {" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()}
    assert {"kernel 6.1.0-cli", "gre no", "esp yes", "datapath ipsec xfrm", "datapath gre gre_tun"} <= lines
    mux = {"Authorization": f"Bearer {tokens.create(make_engine(live.db), 'node', 'cli-mux')}"}
    assert http.post("/v1/nodes/cli-mux/register", headers=mux, json={"role": "mux"}).status_code == 200
    report = {"appliedRevision": 0, "sessions": {"198.18.0.1": "Established", "198.18.0.2": "Active"}}
    assert http.post("/v1/nodes/cli-mux/status", headers=mux, json=report).status_code == 200
    shown = isthmus(live, live.operator, "node", "show", "cli-mux")
    lines = {" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()}
    assert {"bgp 198.18.0.1 Established", "bgp 198.18.0.2 Active"} <= lines, shown.stdout
    missing = isthmus(live, live.operator, "node", "show", "no-such-node")
    assert missing.returncode == 1 and "no node 'no-such-node' has registered" in missing.stderr
    denied = isthmus(live, live.tenant_a, "pool", "list")
    assert denied.returncode == 1 and denied.stderr.startswith("isthmus: error: 403 AuthorizationFailed")


def test_token_and_pki_commands(live: Live, tmp_path: Path) -> None:
    created = isthmus(live, "", "token", "create", "--subscription", SUB_A, "--db", live.db)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    response = httpx.get(
        f"{live.url}/subscriptions/{SUB_A}/providers/Microsoft.Network/virtualNetworks",
        params={"api-version": "2026-03-01"},
        verify=str(live.ca),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    both = isthmus(live, "", "token", "create", "--operator", "--node", "x", "--db", live.db)
    assert both.returncode != 0
    ca = isthmus(live, "", "pki", "init", "--dir", str(tmp_path / "pki"))
    assert ca.returncode == 0 and (tmp_path / "pki" / "server.pem").exists()


def test_nsg_verify(live: Live) -> None:
    http = httpx.Client(base_url=live.url, verify=str(live.ca), headers={"Authorization": f"Bearer {live.tenant_a}"})
    group = f"/subscriptions/{SUB_A}/resourceGroups/verify"
    base = f"{group}/providers/Microsoft.Network"
    api = {"api-version": "2026-03-01"}
    http.put(group.replace("resourceGroups", "resourcegroups"), params={"api-version": "2024-11-01"},
             json={"location": "local"})  # fmt: skip
    ssh = {"name": "ssh", "properties": {"priority": 100, "access": "Allow", "direction": "Inbound",
           "protocol": "Tcp", "sourceAddressPrefix": "Internet", "destinationAddressPrefix": "*",
           "sourcePortRange": "*", "destinationPortRange": "22"}}  # fmt: skip
    http.put(
        f"{base}/networkSecurityGroups/n",
        params=api,
        json={"location": "local", "properties": {"securityRules": [ssh]}},
    )
    vnet = {"addressSpace": {"addressPrefixes": ["100.64.5.0/24"]},
            "subnets": [{"name": "s", "properties": {"addressPrefix": "100.64.5.0/24"}}]}  # fmt: skip
    http.put(f"{base}/virtualNetworks/v", params=api, json={"location": "local", "properties": vnet})
    nic = {"networkSecurityGroup": {"id": f"{base}/networkSecurityGroups/n"}, "ipConfigurations": [
        {"name": "c", "properties": {"subnet": {"id": f"{base}/virtualNetworks/v/subnets/s"}}}]}  # fmt: skip
    assert (
        http.put(f"{base}/networkInterfaces/nic", params=api, json={"location": "local", "properties": nic}).status_code
        == 201
    )

    def verify(port: int) -> dict[str, str]:
        done = isthmus(live, live.tenant_a, "-o", "json", "nsg", "verify", "--nic", f"{base}/networkInterfaces/nic",
                       "--local", f"100.64.5.4:{port}", "--remote", "198.51.100.7:40000")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        answer: dict[str, str] = json.loads(done.stdout)
        return answer

    assert (verify(22)["access"], verify(22)["ruleName"]) == ("Allow", "securityRules/ssh")
    assert verify(23)["ruleName"] == "defaultSecurityRules/DenyAllInBound"
    table = isthmus(live, live.tenant_a, "nsg", "verify", "--nic", f"{base}/networkInterfaces/nic",
                    "--local", "100.64.5.4:23", "--remote", "198.51.100.7:40000")  # fmt: skip
    assert "Deny" in table.stdout and "DenyAllInBound" in table.stdout
