"""Changes while traffic flows: rules, NICs, public IPs, an agent killed with -9, a NIC the host cannot
realise. Established flows of other VMs must never notice."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from isthmus.lab import fabric, probe, vms
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import INTERNET_HOST
from tests.support import wait_for

SUB = "00000000-0000-0000-0000-0000000000c1"
PORT = 7100


@pytest.fixture(scope="module")
def tenant(lab: fabric.LabState) -> Iterator[tuple[Tenant, dict[str, vms.Vm]]]:
    t = Tenant(lab, SUB)
    t.nsg("web", [rule("allow-web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "back": "100.64.2.0/24"}, nsg="web")
    t.public_ip("pip1")
    t.public_ip("pip3")
    t.nic("c1", "vnet1", "front", public_ip="pip1")
    t.nic("c2", "vnet1", "back")
    t.nic("c3", "vnet1", "front")
    made = {name: vms.create(lab, name, t.id(f"networkInterfaces/{name}"), host)
            for name, host in (("c1", "h1"), ("c2", "h2"), ("c3", "h1"))}  # fmt: skip
    servers = [probe.Server(vm.netns, "0.0.0.0", port).start() for vm in made.values() for port in (PORT, 80)]
    try:
        yield t, made
    finally:
        for server in servers:
            server.close()


def test_live_changes_leave_established_flows_alone(
    lab: fabric.LabState, tenant: tuple[Tenant, dict[str, vms.Vm]]
) -> None:
    t, made = tenant
    vip = t.get("publicIPAddresses/pip1")["properties"]["ipAddress"]
    east_west = probe.LongFlow(made["c3"].netns, made["c2"].addresses[0], PORT)
    north_south = probe.LongFlow(lab.topology.netns("inet"), vip, 80)
    with east_west, north_south:
        t.security_rule("web", rule("allow-8080", 120, protocol="Tcp", ports="8080"))
        t.wait_succeeded("networkSecurityGroups/web")
        t.delete("networkSecurityGroups/web/securityRules/allow-8080")
        t.nic("c4", "vnet1", "back")
        c4 = vms.create(lab, "c4", t.id("networkInterfaces/c4"), "h1")
        assert probe.ping(made["c3"].netns, c4.addresses[0])
        vms.delete(lab, "c4")
        t.delete("networkInterfaces/c4")
        t.nic("c3", "vnet1", "front", public_ip="pip3")  # associate, then dissociate, on the flows' own router
        t.wait_succeeded("networkInterfaces/c3")
        t.nic("c3", "vnet1", "front")
        t.wait_succeeded("networkInterfaces/c3")
        time.sleep(0.3)
        before = (east_west.round_trips, north_south.round_trips)
        time.sleep(0.3)
    assert east_west.failures == [] and north_south.failures == []
    assert east_west.round_trips > before[0] and north_south.round_trips > before[1]


def _h1_status(lab: fabric.LabState) -> dict[str, Any]:
    with lab.operator() as http:
        nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
    return dict(nodes["h1"]["status"].get("details", {}))


def test_kill_9_agent_flows_continue_and_restart_changes_nothing(
    lab: fabric.LabState, tenant: tuple[Tenant, dict[str, vms.Vm]]
) -> None:
    _t, made = tenant
    with probe.LongFlow(made["c1"].netns, made["c2"].addresses[0], PORT) as flow:
        os.kill(lab.pids["h1"], signal.SIGKILL)
        time.sleep(0.5)
        while_dead = flow.round_trips
        time.sleep(0.5)
        assert flow.round_trips > while_dead  # nothing depends on the agent being alive
        pid = fabric.restart_agent(lab, "h1")
        details = wait_for(lambda: (d := _h1_status(lab)).get("pid") == pid and d.get("passes", 0) >= 1 and d)
        time.sleep(0.3)
    assert flow.failures == []
    assert details["full"] is True and details["changes"] == 0, details  # reconciled without touching anything


def test_a_nic_the_host_cannot_realise_is_failed_with_the_reason(
    lab: fabric.LabState, tenant: tuple[Tenant, dict[str, vms.Vm]]
) -> None:
    t, _made = tenant
    space = {"addressPrefixes": ["100.65.0.0/16", "2001:db8:a::/48"]}
    subnet = {"name": "s1", "properties": {"addressPrefixes": ["100.65.1.0/24", "2001:db8:a:1::/64"]}}
    t.put("virtualNetworks/dual", {"addressSpace": space, "subnets": [subnet]})
    subnet_id = {"id": t.id("virtualNetworks/dual/subnets/s1")}
    v4 = {"name": "v4", "properties": {"subnet": subnet_id, "primary": True}}
    v6 = {"name": "v6", "properties": {"subnet": subnet_id, "privateIPAddressVersion": "IPv6"}}
    t.put("networkInterfaces/d1", {"ipConfigurations": [v4]})
    d1 = vms.create(lab, "d1", t.id("networkInterfaces/d1"), "h1")
    assert t.wait_succeeded("networkInterfaces/d1")["properties"]["provisioningState"] == "Succeeded"

    t.put("networkInterfaces/d1", {"ipConfigurations": [v4, v6]})
    failed = wait_for(lambda: (d := t.get("networkInterfaces/d1"))["properties"]["provisioningState"] == "Failed" and d)
    assert probe.ping(d1.netns, "100.65.1.1")  # the last good state stays
    with lab.operator() as http:
        events = http.get("/admin/events", params={"limit": 50}).json()["value"]
    assert any(e["kind"] == "apply.failed" and "IPv6" in e["message"] for e in events), events
    assert failed["properties"]["provisioningState"] == "Failed"

    t.put("networkInterfaces/d1", {"ipConfigurations": [v4]})
    wait_for(lambda: t.get("networkInterfaces/d1")["properties"]["provisioningState"] == "Succeeded")
    vms.delete(lab, "d1")
    t.delete("networkInterfaces/d1")


def test_internet_host_sees_nothing_of_tenant_addresses(lab: fabric.LabState, tenant: Any) -> None:
    _t, made = tenant
    internet = probe.Server(lab.topology.netns("inet"), INTERNET_HOST, PORT + 5).start()
    try:
        assert probe.tcp_echo(made["c2"].netns, INTERNET_HOST, PORT + 5)
        assert all(not peer[0].startswith("100.64.") for peer in internet.peers)
    finally:
        internet.close()
