"""The resource commands as a user runs them against a real controller: create|show|list|update|delete of
tenant resources, resource groups and operator objects, their errors, tables at 80 and 200 columns, and the
README's "Running it by hand" block run as it is written."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import isthmus as package
from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.e2e.conftest import SUB_B, Live

REPO = Path(__file__).resolve().parents[2]
NETWORK = f"/subscriptions/{SUB_B}/resourceGroups/rg/providers/Microsoft.Network"


def run(live: Live, token: str, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    env |= {"ISTHMUS_CONTROLLER": live.url, "ISTHMUS_CA": str(live.ca), "ISTHMUS_TOKEN": token,
            "COLUMNS": str(columns)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "isthmus", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def ok(live: Live, token: str, *args: str, columns: int = 200) -> str:
    done = run(live, token, *args, columns=columns)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def as_json(live: Live, token: str, *args: str) -> object:
    return json.loads(ok(live, token, "-o", "json", *args))


def fails(live: Live, token: str, *args: str) -> str:
    done = run(live, token, *args)
    assert done.returncode != 0, f"{args} succeeded: {done.stdout}"
    assert done.stderr.startswith("isthmus: error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def fits(text: str, columns: int) -> bool:
    """Every line within `columns`, but a resource's id, printed whole to be copied."""
    return all(len(line) <= columns for line in text.splitlines() if not line.startswith("id: "))


def test_tenant_resources(live: Live) -> None:
    t = live.tenant_b  # -s is never given: the tenant token's own subscription
    # No public IP pool yet: the error says what the operator must do.
    ok(live, t, "group", "create", "rg")
    no_pool = fails(live, t, "publicip", "create", "early", "-g", "rg", "--allocation-method", "Static")
    assert "NoPublicIPAddressPool" in no_pool and "isthmus publicip-pool create" in no_pool
    ok(live, live.operator, "publicip-pool", "create", "res-pool", "--address-prefixes", "203.0.113.0/26")

    vnet = ok(live, t, "vnet", "create", "net", "-g", "rg", "--address-prefixes", "100.64.0.0/16",
              "--subnet-name", "web", "--subnet-prefixes", "100.64.1.0/24")  # fmt: skip
    assert "web 100.64.1.0/24" in vnet and f"id: {NETWORK}/virtualNetworks/net" in vnet
    assert "exists already" in fails(
        live, t, "vnet", "create", "net", "-g", "rg", "--address-prefixes", "100.64.0.0/16"
    )
    ok(
        live,
        t,
        "subnet",
        "create",
        "GatewaySubnet",
        "-g",
        "rg",
        "--vnet-name",
        "net",
        "--address-prefixes",
        "100.64.255.0/27",
    )
    assert "GatewaySubnet" in ok(live, t, "subnet", "list", "-g", "rg", "--vnet-name", "net")
    assert "100.64.0.0/16" in ok(live, t, "vnet", "show", "net", "-g", "rg")
    assert "--group/-g" in fails(live, t, "vnet", "show", "net")
    assert "404 ResourceNotFound" in fails(live, t, "vnet", "show", "nope", "-g", "rg")

    ok(live, t, "nsg", "create", "n", "-g", "rg")
    rule = as_json(live, t, "nsg", "rule", "create", "ssh", "-g", "rg", "--nsg-name", "n", "--priority", "100",
                   "--protocol", "tcp", "--direction", "inbound", "--destination-port-ranges", "22",
                   "--source-address-prefixes", "198.51.100.0/24,192.0.2.0/24")  # fmt: skip
    assert isinstance(rule, dict)
    assert (rule["properties"]["protocol"], rule["properties"]["direction"]) == ("Tcp", "Inbound")
    assert rule["properties"]["sourceAddressPrefixes"] == ["198.51.100.0/24", "192.0.2.0/24"]
    changed = as_json(live, t, "nsg", "rule", "update", "ssh", "-g", "rg", "--nsg-name", "n", "--access", "DENY")
    assert isinstance(changed, dict) and changed["properties"]["access"] == "Deny"
    assert changed["properties"]["destinationPortRange"] == "22"  # the rest kept
    assert "nothing to change" in fails(live, t, "nsg", "rule", "update", "ssh", "-g", "rg", "--nsg-name", "n")
    assert "--priority" in fails(live, t, "nsg", "rule", "create", "x", "-g", "rg", "--nsg-name", "n")

    ok(live, t, "publicip", "create", "ip", "-g", "rg", "--allocation-method", "static", "--sku", "standard")
    nic = ok(live, t, "nic", "create", "nic", "-g", "rg", "--vnet-name", "net", "--subnet", "web",
             "--public-ip-address", "ip", "--nsg", "n")  # fmt: skip
    assert "100.64.1.4" in nic and f"id: {NETWORK}/networkInterfaces/nic\n" in nic  # the id to copy, whole
    shown = as_json(live, t, "nic", "show", f"{NETWORK}/networkInterfaces/nic")  # an id works as well as a name
    assert isinstance(shown, dict)
    config_id = shown["properties"]["ipConfigurations"][0]["id"]
    pip = as_json(live, t, "publicip", "show", "ip", "-g", "rg")
    assert isinstance(pip, dict) and pip["properties"]["ipConfiguration"]["id"] == config_id  # as the NIC spells it
    for columns in (80, 200):
        table = ok(live, t, "publicip", "list", columns=columns)
        assert "nic/ipconfig1" in table and "203.0.113." in table and fits(table, columns), table
    static = as_json(live, t, "nic", "update", "nic", "-g", "rg", "--private-ip-address", "100.64.1.20")
    assert isinstance(static, dict)
    assert static["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] == "100.64.1.20"
    tagged = as_json(live, t, "vnet", "update", "net", "-g", "rg", "--set", "tags.env=lab")
    assert isinstance(tagged, dict) and tagged["tags"] == {"env": "lab"}

    # nsg verify: a NIC by name, any case, ICMP without ports, and the public IP pointing to the private one.
    verdict = as_json(live, t, "nsg", "verify", "--nic", "nic", "-g", "rg", "--direction", "inbound",
                      "--protocol", "tcp", "--local", "100.64.1.20:22", "--remote", "198.51.100.7:40000")  # fmt: skip
    assert verdict == {
        "access": "Deny",
        "ruleName": "securityRules/ssh",
        "networkSecurityGroup": f"{NETWORK}/networkSecurityGroups/n",
    }
    icmp = as_json(live, t, "nsg", "verify", "--nic", "nic", "-g", "rg", "--protocol", "icmp",
                   "--local", "100.64.1.20", "--remote", "198.51.100.7")  # fmt: skip
    assert isinstance(icmp, dict) and icmp["ruleName"] == "defaultSecurityRules/DenyAllInBound"
    public = pip["properties"]["ipAddress"]
    wrong = fails(
        live, t, "nsg", "verify", "--nic", "nic", "-g", "rg", "--local", f"{public}:22", "--remote", "198.51.100.7:1"
    )
    assert "private address 100.64.1.20" in wrong

    # A VPN: gateway on GatewaySubnet with a public IP, a local gateway, a connection whose key never comes back;
    # the operator's pool sold at VpnGw1's tier carries it.
    ok(live, live.operator, "pool", "create", "vpngw1", "--capacity-kbps", "6500000", "--tier-kbps", "650000",
       "--redundant-gateways", "0")  # fmt: skip
    ok(live, live.operator, "gateway", "create", "res-gw", "--node", "res-gw", "--pool", "vpngw1")
    ok(live, t, "publicip", "create", "gw-ip", "-g", "rg")
    gateway = ok(live, t, "vnet-gateway", "create", "gw", "-g", "rg", "--vnet", "net", "--public-ip-address", "gw-ip")
    assert "VpnGw1" in gateway
    ok(live, t, "local-gateway", "create", "onprem", "-g", "rg", "--gateway-ip-address", "198.51.100.1",
       "--local-address-prefixes", "192.0.2.0/24")  # fmt: skip
    secret = "a-very-secret-key-42"
    for output in ("table", "json", "yaml"):
        name = f"vpn-{output}"
        made = ok(live, t, "-o", output, "connection", "create", name, "-g", "rg", "--vnet-gateway", "gw",
                  "--local-gateway", "onprem", "--shared-key", secret)  # fmt: skip
        assert secret not in made and name in made
    assert secret not in ok(live, t, "-o", "json", "connection", "list")
    assert "vpn-table" in ok(live, t, "connection", "list", "-g", "rg")
    assert "1950/6500 Mbps" in ok(live, live.operator, "gateway", "list", "--wide")  # three connections at 650
    deleted = run(live, t, "connection", "delete", "vpn-table", "-g", "rg")
    assert deleted.returncode == 0 and "deleted" in deleted.stderr
    again = run(live, t, "connection", "delete", "vpn-table", "-g", "rg")
    assert again.returncode == 0 and "nothing deleted" in again.stderr
    assert "InUse" in fails(live, t, "subnet", "delete", "web", "-g", "rg", "--vnet-name", "net")

    # Resource groups: listed, shown, and deleted only when confirmed.
    assert "rg" in ok(live, t, "group", "list")
    assert f"id: /subscriptions/{SUB_B}/resourceGroups/rg" in ok(live, t, "group", "show", "rg")
    assert "--yes" in fails(live, t, "group", "delete", "rg")
    gone = run(live, t, "group", "delete", "rg", "--yes")
    assert gone.returncode == 0 and "deleted" in gone.stderr, gone.stderr
    assert "ResourceGroupNotFound" in fails(live, t, "group", "show", "rg")
    assert ok(live, t, "-o", "json", "vnet", "list") == "[]\n"


def test_operator_objects(live: Live) -> None:
    op = live.operator
    pool = ok(live, op, "pool", "create", "op-pool", "--capacity-kbps", "1000000", "--tier-kbps", "100000")
    assert "op-pool" in pool and "1000000" in pool
    assert "exists already" in fails(live, op, "pool", "create", "op-pool", "--capacity-kbps", "1", "--tier-kbps", "1")
    updated = as_json(live, op, "pool", "update", "op-pool", "--redundant-gateways", "2")
    assert isinstance(updated, dict) and updated["properties"]["redundantGatewayCount"] == 2
    assert updated["properties"]["gatewayCapacityKbps"] == 1_000_000
    ok(live, op, "gateway", "create", "op-gw", "--node", "op-gw", "--pool", "op-pool")
    assert "OutOfService" in ok(live, op, "gateway", "update", "op-gw", "--service-state", "OutOfService")
    assert "standby" in ok(live, op, "gateway", "show", "op-gw")  # not available: a standby carrying nothing
    mux = as_json(live, op, "mux", "create", "op-mux", "--node", "op-mux", "--asn", "65010", "--router-id",
                  "198.18.0.10", "--peer", "198.18.0.1:65000")  # fmt: skip
    assert isinstance(mux, dict) and mux["properties"]["peers"] == [{"address": "198.18.0.1", "asn": 65000}]
    ok(live, op, "host", "create", "op-host", "--node", "op-host", "--address", "198.18.1.10")
    ok(live, op, "publicip-pool", "create", "op-public", "--address-prefixes", "198.51.100.0/28")
    assert "198.51.100.0/28" in ok(live, op, "publicip-pool", "list")
    assert "op-host" in ok(live, op, "host", "show", "op-host")
    for noun, name in (("pool", "op-pool"), ("gateway", "op-gw"), ("mux", "op-mux"), ("host", "op-host")):
        assert name in ok(live, op, noun, "list"), noun
    assert "routes" in ok(live, op, "mux", "--help")  # the MUX objects' commands sit beside `mux routes`

    t = live.tenant_a
    ok(live, t, "group", "create", "pb")
    ok(live, t, "vnet", "create", "v", "-g", "pb", "--address-prefixes", "100.65.0.0/24", "--subnet-name", "s",
       "--subnet-prefixes", "100.65.0.0/24")  # fmt: skip
    nic_id = as_json(live, t, "nic", "create", "n", "-g", "pb", "--vnet-name", "v", "--subnet", "s")
    assert isinstance(nic_id, dict)
    binding = ok(live, op, "port-binding", "create", "vm1", "--nic", "n", "--nic-group", "pb", "--nic-subscription",
                 nic_id["id"].split("/")[2], "--host", "op-host")  # fmt: skip
    assert "op-host" in binding
    assert "port binding vm1" in fails(live, op, "host", "delete", "op-host")
    ok(live, op, "port-binding", "delete", "vm1")
    for noun, name in (("host", "op-host"), ("mux", "op-mux"), ("gateway", "op-gw"), ("pool", "op-pool")):
        done = run(live, op, noun, "delete", name)
        assert done.returncode == 0 and "deleted" in done.stderr, done.stderr
    assert "404" in fails(live, op, "pool", "show", "op-pool")
    assert "403 AuthorizationFailed" in fails(
        live, t, "pool", "create", "x", "--capacity-kbps", "1", "--tier-kbps", "1"
    )


def test_tables_fit_80_columns(live: Live) -> None:
    t = live.tenant_a
    ok(live, t, "group", "create", "wide")
    ok(live, t, "nsg", "create", "rules", "-g", "wide")
    ok(live, t, "nsg", "rule", "create", "allow-https-from-partners", "-g", "wide", "--nsg-name", "rules",
       "--priority", "200", "--protocol", "Tcp", "--destination-port-ranges", "443,8443",
       "--source-address-prefixes", "198.51.100.0/24")  # fmt: skip
    node = tokens.create(make_engine(live.db), "node", "host-with-a-long-name-07")
    register = ["-c", "import httpx,sys; print(httpx.post(sys.argv[1], json={'role': 'host'}, verify=sys.argv[3],"
                " headers={'Authorization': 'Bearer ' + sys.argv[2]}).status_code)"]  # fmt: skip
    url = f"{live.url}/v1/nodes/host-with-a-long-name-07/register"
    assert subprocess.run([sys.executable, *register, url, node, str(live.ca)], capture_output=True, text=True,
                          timeout=30).stdout.strip() == "200"  # fmt: skip
    for columns in (80, 200):
        rules = ok(live, t, "nsg", "show", "rules", "-g", "wide", columns=columns)
        assert re.search(r"allow-https-from-partners\s+│ Inbound\s+│ Allow\s+│ Tcp\s+│", rules), rules
        assert "443, 8443" in rules and fits(rules, columns)
        events = ok(live, live.operator, "events", columns=columns)
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", events) and fits(events, columns), events
        nodes = ok(live, live.operator, "node", "list", columns=columns)
        assert "last seen" in nodes and "host-with-a-long-name-07" in nodes and fits(nodes, columns), nodes
    for args in (("vnet", "list"), ("nsg", "list"), ("nic", "list")):
        assert fits(ok(live, t, *args, columns=80), 80), args
    assert "not shown for the terminal's width" not in ok(live, t, "nsg", "show", "rules", "-g", "wide", columns=200)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Running it by hand") :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("\n```", start)]


def test_readme_running_it_by_hand(tmp_path: Path) -> None:
    """The README's block, line by line in one shell on an empty directory (its .venv/bin/isthmus this
    interpreter), on a free port instead of 8443; it stops its controller itself (`kill $CONTROLLER`)."""
    block = readme_block()
    assert "isthmus group create" in block and "-s " not in block.replace("-s SUBSCRIPTION", "")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "isthmus").write_text(f'#!/bin/sh\nexec {sys.executable} -m isthmus "$@"\n')
    (venv / "isthmus").chmod(0o755)
    script = "set -euo pipefail\ntrap 'kill ${CONTROLLER:-} 2>/dev/null || true' EXIT\n"
    script += block.replace("8443", str(_free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISTHMUS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(package.__file__).parents[1]), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "80"
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the README block did not finish in 180 s: {timeout.stdout!r} {timeout.stderr!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "203.0.113.0/24" in out and "100.64.1.4" in out and "nic1/ipconfig1" not in done.stderr
    assert re.search(
        r"id: /subscriptions/0{8}-0{4}-0{4}-0{4}-0{11}a/resourceGroups/lab/providers/Microsoft.Network"
        r"/networkInterfaces/nic1\n",
        out,
    )
    assert re.search(r"│ Allow\s+│ securityRules/ssh", out), out
    tables = "\n".join(line for line in out.splitlines() if line[:1] in "┏┃┡│└")  # not the JSON of `nic list`
    assert fits(tables, 80), out
