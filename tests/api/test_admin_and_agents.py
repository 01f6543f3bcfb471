"""Operator API and the agent protocol: declared nodes, placement, documents, status."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from isthmus.api.nodes import REVISION_HEADER as REVISION
from isthmus.linux.capabilities import Capabilities
from isthmus.linux.datapath import choose_datapath, registration_capabilities
from isthmus.model import limits
from isthmus.store import tokens
from tests.conftest import Controller, gateway_body, net, vnet_body


def declare_fabric(c: Controller) -> None:
    objects: list[tuple[str, dict[str, Any]]] = [
        ("/hosts/host1", {"properties": {"node": "host1", "address": "198.18.0.11"}}),
        ("/hosts/host2", {"properties": {"node": "host2", "address": "198.18.0.12"}}),
        (
            "/loadBalancerMuxes/mux1",
            {
                "properties": {
                    "node": "mux1",
                    "asn": 65001,
                    "routerId": "198.18.0.21",
                    "peers": [{"address": "198.18.0.1", "asn": 65000}],
                }
            },
        ),
        (
            "/gatewayPools/ipsec",
            {
                "properties": {
                    "type": "S2sIpsec",
                    "redundantGatewayCount": 1,
                    "gatewayCapacityKbps": 1_000_000,
                    "tierBandwidthKbps": 100_000,
                }
            },
        ),
        ("/gateways/gw1", {"properties": {"node": "gw1", "pool": "ipsec"}}),
        ("/gateways/gw2", {"properties": {"node": "gw2", "pool": "ipsec"}}),
        ("/gateways/gw3", {"properties": {"node": "gw3", "pool": "ipsec"}}),
    ]
    for path, body in objects:
        response = c.admin("PUT", path, body)
        assert response.status_code == 201, response.text


def tenant_world(c: Controller, bind: bool = True) -> None:
    vnet = net("virtualNetworks", "v")
    calls = [
        (
            "PUT",
            vnet,
            vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"}),
        ),
        (
            "PUT",
            net("publicIPAddresses", "vm"),
            {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
        ),
        ("PUT", net("publicIPAddresses", "gw"), {"location": "local"}),
        (
            "PUT",
            net("networkInterfaces", "nic1"),
            {
                "location": "local",
                "properties": {
                    "ipConfigurations": [
                        {
                            "name": "c",
                            "properties": {
                                "subnet": {"id": vnet + "/subnets/a"},
                                "publicIPAddress": {"id": net("publicIPAddresses", "vm")},
                            },
                        }
                    ]
                },
            },
        ),
        (
            "PUT",
            net("networkInterfaces", "nic2"),
            {
                "location": "local",
                "properties": {
                    "ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": vnet + "/subnets/a"}}}]
                },
            },
        ),
        (
            "PUT",
            net("virtualNetworkGateways", "gw"),
            gateway_body(vnet, net("publicIPAddresses", "gw")),
        ),
        (
            "PUT",
            net("localNetworkGateways", "site"),
            {
                "location": "local",
                "properties": {
                    "gatewayIpAddress": "198.51.100.20",
                    "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
                },
            },
        ),
        (
            "PUT",
            net("connections", "conn"),
            {
                "location": "local",
                "properties": {
                    "connectionType": "IPsec",
                    "sharedKey": "psk",
                    "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw")},
                    "localNetworkGateway2": {"id": net("localNetworkGateways", "site")},
                },
            },
        ),
    ]
    for method, path, body in calls:
        response = c.call(method, path, body)
        assert response.status_code == 201, response.text
    for nic, host in (("nic1", "host1"), ("nic2", "host2")) if bind else ():
        bound = c.admin(
            "PUT",
            f"/portBindings/{nic}",
            {"properties": {"networkInterface": net("networkInterfaces", nic), "host": host}},
        )
        assert bound.status_code == 201, bound.text


def register(c: Controller, node: str, role: str, address: str, **more: Any) -> str:
    token = tokens.create(c.engine, "node", node)
    response = c.client.post(
        f"/v1/nodes/{node}/register", json={"role": role, "address": address, **more}, headers=c.headers(token)
    )
    assert response.status_code == 200, response.text
    return token


def test_placement_puts_the_gateway_on_an_active(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    placement = seeded.admin("GET", "/placement").json()
    assert placement["unplaced"] == []
    [placed] = placement["placed"]
    assert placed["pool"] == "ipsec" and placed["node"] in ("gw1", "gw2")  # gw3 is the standby (N=1)
    roles = {g["name"]: g["role"] for g in placement["pools"][0]["gateways"]}
    assert roles == {"gw1": "active", "gw2": "active", "gw3": "standby"}
    assert placed["kbps"] == 100_000


def test_unplaceable_gateway_says_why(seeded: Controller) -> None:
    tenant_world(seeded, bind=False)  # no pools at all
    [unplaced] = seeded.admin("GET", "/placement").json()["unplaced"]
    assert "tier" in unplaced["reason"]


def test_documents_per_node(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    host_token = register(seeded, "host1", "host", "198.18.0.11")
    register(seeded, "host2", "host", "198.18.0.12")
    mux_token = register(seeded, "mux1", "mux", "198.18.0.21")
    host = seeded.client.get("/v1/nodes/host1/desired", params={"after": 0}, headers=seeded.headers(host_token))
    assert host.status_code == 200, host.text
    doc = host.json()
    assert [n["id"].split("/")[-1] for n in doc["networkInterfaces"]] == ["nic1"]
    [vnet] = doc["virtualNetworks"]
    assert vnet["vni"] >= 4096 and [r["vtep"] for r in vnet["remotes"]] == ["198.18.0.12"]
    assert vnet["remotes"][0]["routerMac"] != vnet["routerMac"]
    assert doc["outboundNatAddress"].startswith("203.0.113.")
    assert doc["networkInterfaces"][0]["ipConfigurations"][0]["publicIPAddress"].startswith("203.0.113.")

    mux = seeded.client.get("/v1/nodes/mux1/desired", params={"after": 0}, headers=seeded.headers(mux_token)).json()
    assert mux["bgp"]["asn"] == 65001
    vips = {v["owner"].split("/")[-1]: (prefix, v) for prefix, v in mux["vips"].items()}
    prefix, vm = vips["vm"]
    assert vm["nextHop"] == "198.18.0.11" and prefix.endswith("/32")

    other = seeded.client.get("/v1/nodes/host2/desired", headers=seeded.headers(host_token))
    assert other.status_code == 403  # a node token acts only as its node


def test_gateway_document_carries_the_connection_and_its_key(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    node = seeded.admin("GET", "/placement").json()["placed"][0]["node"]
    token = register(seeded, node, "gateway", "198.18.0.31")
    doc = seeded.client.get(f"/v1/nodes/{node}/desired", headers=seeded.headers(token)).json()
    assert doc["state"] == "active"
    [compartment] = doc["compartments"]
    assert compartment["vip"].startswith("203.0.113.")
    assert compartment["connections"][0]["sharedKey"] == "psk"
    assert compartment["connections"][0]["remotePrefixes"] == ["192.0.2.0/24"]


def test_long_poll_waits_for_a_change(seeded: Controller) -> None:
    declare_fabric(seeded)
    token = register(seeded, "host1", "host", "198.18.0.11")
    revision = int(
        seeded.client.get("/v1/nodes/host1/desired", headers=seeded.headers(token)).headers["X-Isthmus-Revision"]
    )
    quiet = seeded.client.get(
        "/v1/nodes/host1/desired", params={"after": revision, "timeout": 0.3}, headers=seeded.headers(token)
    )
    assert quiet.status_code == 304

    seeded.call("PUT", net("virtualNetworks", "late"), vnet_body("100.64.0.0/16"))
    unrelated = seeded.client.get(
        "/v1/nodes/host1/desired", params={"after": revision, "timeout": 0.5}, headers=seeded.headers(token)
    )
    assert unrelated.status_code == 304  # a change that does not reach host1's document does not wake it

    def write_soon() -> None:
        time.sleep(0.3)
        seeded.admin("PUT", "/hosts/host1", {"properties": {"node": "host1", "address": "198.18.0.13"}})

    writer = threading.Thread(target=write_soon)
    writer.start()
    started = time.monotonic()
    woken = seeded.client.get(
        "/v1/nodes/host1/desired", params={"after": revision, "timeout": 10}, headers=seeded.headers(token)
    )
    elapsed = time.monotonic() - started
    writer.join()
    assert woken.status_code == 200
    assert int(woken.headers["X-Isthmus-Revision"]) > revision
    assert elapsed < 5


def test_status_reports_and_role_checks(seeded: Controller) -> None:
    declare_fabric(seeded)
    token = register(seeded, "host1", "host", "198.18.0.11")
    report = seeded.client.post(
        "/v1/nodes/host1/status",
        json={"appliedRevision": 3, "daemons": {"nft": "ok"}},
        headers=seeded.headers(token),
    )
    assert report.status_code == 200
    nodes = seeded.admin("GET", "/nodes").json()["value"]
    assert nodes[0]["appliedRevision"] == 3
    wrong = seeded.client.post("/v1/nodes/host1/register", json={"role": "mux"}, headers=seeded.headers(token))
    assert wrong.status_code == 409


def test_a_mux_reports_its_bgp_sessions(seeded: Controller) -> None:
    """The MUX's observed sessions are kept whole and shown by /admin/nodes; a report with more of them than the
    limit, or a state longer than a state, is refused whole."""
    declare_fabric(seeded)
    token = register(seeded, "mux1", "mux", "198.18.0.21")
    sessions = {"198.18.0.1": "Established", "2001:db8::1": "Active"}
    body = {"appliedRevision": 0, "sessions": sessions}
    assert seeded.client.post("/v1/nodes/mux1/status", json=body, headers=seeded.headers(token)).status_code == 200
    nodes = {n["name"]: n for n in seeded.admin("GET", "/nodes").json()["value"]}
    assert nodes["mux1"]["status"]["sessions"] == sessions
    too_many = {f"100.64.0.{i}": "Idle" for i in range(limits.REPORT_BGP_SESSIONS + 1)}
    for bad in (too_many, {"198.18.0.1": "E" * (limits.REPORT_BGP_STATE_LENGTH + 1)}, {"": "Idle"}):
        answer = seeded.client.post(
            "/v1/nodes/mux1/status", json={**body, "sessions": bad}, headers=seeded.headers(token)
        )
        assert answer.status_code == 400, answer.text
    nodes = {n["name"]: n for n in seeded.admin("GET", "/nodes").json()["value"]}
    assert nodes["mux1"]["status"]["sessions"] == sessions


def test_admin_bad_input_changes_nothing(seeded: Controller) -> None:
    declare_fabric(seeded)
    before = seeded.dump()
    cases = [
        (
            "/loadBalancerMuxes/m2",
            {"properties": {"node": "m2", "asn": 0, "routerId": "198.18.0.22"}},
            "properties.asn",
        ),
        (
            "/loadBalancerMuxes/m2",
            {"properties": {"node": "m2", "asn": 65002, "routerId": "not-an-ip"}},
            "properties.routerId",
        ),
        (
            "/loadBalancerMuxes/m2",
            {
                "properties": {
                    "node": "m2",
                    "asn": 65002,
                    "routerId": "198.18.0.22",
                    "peers": [{"address": "198.18.0.999", "asn": 65000}],
                }
            },
            "properties.peers[0].address",
        ),
        (
            "/publicIpPools/p2",
            {"properties": {"addressPrefixes": ["203.0.113.128/25"]}},
            "properties.addressPrefixes[0]",
        ),
        ("/gateways/gw9", {"properties": {"node": "gw9", "pool": "missing"}}, "properties.pool"),
        ("/gateways/gw9", {"properties": {"node": "host1", "pool": "ipsec"}}, "properties.node"),
        (
            "/gatewayPools/p",
            {"properties": {"type": "Magic", "gatewayCapacityKbps": 1, "tierBandwidthKbps": 1}},
            "properties.type",
        ),
    ]
    for path, body, target in cases:
        response = seeded.admin("PUT", path, body)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert response.json()["error"]["target"] == target, response.text
    assert seeded.admin("DELETE", "/gatewayPools/ipsec").status_code == 409
    assert seeded.dump() == before


def test_public_ip_never_allocated_twice_under_concurrent_puts(seeded: Controller) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def create(index: int) -> None:
        response = seeded.call(
            "PUT",
            net("publicIPAddresses", f"p{index}"),
            {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
        )
        assert response.status_code == 201, response.text
        with lock:
            results.append(response.json()["properties"]["ipAddress"])

    threads = [threading.Thread(target=create, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 24 and len(set(results)) == 24


def test_a_node_failure_shows_as_provisioning_state_failed_with_the_reason(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    token = register(seeded, "host1", "host", "198.18.0.11")
    nic = net("networkInterfaces", "nic1")

    revision = int(
        seeded.client.get("/v1/nodes/host1/desired", headers=seeded.headers(token)).headers["X-Isthmus-Revision"]
    )

    def report(state: str, message: str = "") -> None:
        body = {"appliedRevision": revision, "resources": {nic: {"state": state, "message": message}}}
        assert seeded.client.post("/v1/nodes/host1/status", json=body, headers=seeded.headers(token)).status_code == 200

    report("Failed", "veth creation failed: File exists")
    assert seeded.call("GET", nic).json()["properties"]["provisioningState"] == "Failed"
    events = seeded.admin("GET", "/events?limit=1000").json()["value"]
    assert any(e["kind"] == "apply.failed" and "File exists" in e["message"] for e in events)
    report("Succeeded")
    assert seeded.call("GET", nic).json()["properties"]["provisioningState"] == "Succeeded"
    events = seeded.admin("GET", "/events?limit=1000").json()["value"]
    assert events[-1]["kind"] == "apply.recovered"


def test_updating_until_the_live_node_that_carries_it_has_applied_it(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    nic = net("networkInterfaces", "nic2")  # bound to host2, which has not registered
    assert seeded.call("GET", nic).json()["properties"]["provisioningState"] == "Succeeded"
    token = register(seeded, "host2", "host", "198.18.0.12")  # live now, having applied nothing
    time.sleep(1.1)  # liveness is read at most once a second
    pending = seeded.call("GET", nic)
    assert pending.json()["properties"]["provisioningState"] == "Updating"
    updated = seeded.call(
        "PUT",
        nic,
        {
            "location": "local",
            "tags": {"v": "2"},
            "properties": {
                "ipConfigurations": [
                    {"name": "c", "properties": {"subnet": {"id": net("virtualNetworks", "v") + "/subnets/a"}}}
                ]
            },
        },
    )
    assert updated.json()["properties"]["provisioningState"] == "Updating"
    assert updated.headers["Retry-After"] == "1"
    other = seeded.call("GET", net("networkInterfaces", "nic1"))  # on host1, which is not live
    assert other.json()["properties"]["provisioningState"] == "Succeeded"
    desired = seeded.client.get("/v1/nodes/host2/desired", headers=seeded.headers(token))
    applied = int(desired.headers["X-Isthmus-Revision"])
    seeded.client.post("/v1/nodes/host2/status", json={"appliedRevision": applied}, headers=seeded.headers(token))
    time.sleep(1.1)
    assert seeded.call("GET", nic).json()["properties"]["provisioningState"] == "Succeeded"


def test_revoked_token_stops_working(seeded: Controller) -> None:
    secret = tokens.create(seeded.engine, "subscription", "00000000-0000-0000-0000-0000000000cc")
    assert tokens.lookup(seeded.engine, secret) is not None
    assert tokens.revoke(seeded.engine, secret.split("_")[1])
    assert tokens.lookup(seeded.engine, secret) is None
    assert not tokens.revoke(seeded.engine, secret.split("_")[1])


def test_a_nic_gaining_a_public_ip_is_updating_until_the_muxes_have_announced_it(seeded: Controller) -> None:
    """The NIC's host is not live, but the MUXes must announce the new public IP: the PUT's answer is
    Updating (it used to be computed inside the write transaction, before the change could reach them)."""
    declare_fabric(seeded)
    tenant_world(seeded)
    seeded.call("PUT", net("publicIPAddresses", "late"), {"location": "local"})  # Dynamic: no address yet
    token = register(seeded, "mux1", "mux", "198.18.0.21")
    applied = int(seeded.client.get("/v1/nodes/mux1/desired", headers=seeded.headers(token)).headers[REVISION])
    seeded.client.post("/v1/nodes/mux1/status", json={"appliedRevision": applied}, headers=seeded.headers(token))
    time.sleep(1.1)  # liveness is read at most once a second
    nic2 = net("networkInterfaces", "nic2")  # bound to host2, which has not registered
    subnet = {"id": net("virtualNetworks", "v") + "/subnets/a"}
    config = {
        "name": "c",
        "properties": {"subnet": subnet, "publicIPAddress": {"id": net("publicIPAddresses", "late")}},
    }
    updated = seeded.call("PUT", nic2, {"location": "local", "properties": {"ipConfigurations": [config]}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["properties"]["provisioningState"] == "Updating"
    woken = seeded.client.get(
        "/v1/nodes/mux1/desired", params={"after": applied, "timeout": 5}, headers=seeded.headers(token)
    )
    assert woken.status_code == 200
    seeded.client.post(
        "/v1/nodes/mux1/status", json={"appliedRevision": int(woken.headers[REVISION])}, headers=seeded.headers(token)
    )
    time.sleep(1.1)
    assert seeded.call("GET", nic2).json()["properties"]["provisioningState"] == "Succeeded"


PROBED = Capabilities(kernel="6.1.0-18-amd64", esp=True, gre=True, vlan=False, vrf=True, netem=True, vxlan=True,
                      nft=True, nft_flowtable=False)  # fmt: skip


def node_entry(c: Controller, node: str) -> dict[str, Any]:
    return dict(next(n for n in c.admin("GET", "/nodes").json()["value"] if n["name"] == node))


def test_a_registration_with_capabilities_is_stored_and_shown(seeded: Controller) -> None:
    register(seeded, "host1", "host", "198.18.0.11", capabilities=registration_capabilities(PROBED))
    shown = node_entry(seeded, "host1")
    assert shown["capabilities"] == PROBED.to_json()
    assert shown["datapath"] == choose_datapath(PROBED) and shown["datapath"]["vlan"] == "unavailable"


def test_an_agent_that_does_not_probe_still_registers_and_shows_nothing_known(seeded: Controller) -> None:
    token = register(seeded, "host1", "host", "198.18.0.11", capabilities=registration_capabilities(PROBED))
    again = seeded.client.post("/v1/nodes/host1/register", json={"role": "host"}, headers=seeded.headers(token))
    assert again.status_code == 200, again.text
    shown = node_entry(seeded, "host1")
    assert (shown["capabilities"], shown["datapath"]) == ({}, {})  # not the previous kernel's answer


GOOD = registration_capabilities(PROBED)
BAD_CAPABILITIES: list[tuple[str, Any, str]] = [
    ("unknown field", {**GOOD, "dpdk": True}, "capabilities.dpdk"),
    ("oversize kernel", {**GOOD, "kernel": "6" * (limits.KERNEL_RELEASE_LENGTH + 1)}, "capabilities.kernel"),
    ("string for a bool", {**GOOD, "esp": "yes"}, "capabilities.esp"),
    ("number for a bool", {**GOOD, "gre": 1}, "capabilities.gre"),
    ("feature missing", {k: v for k, v in GOOD.items() if k != "vxlan"}, "capabilities.vxlan"),
    ("not an object", "xfrm", "capabilities"),
    ("datapath not words", {**GOOD, "datapath": {"ipsec": "x f r m"}}, "capabilities.datapath.ipsec"),
    ("oversize datapath word", {**GOOD, "datapath": {"ipsec": "x" * (limits.DATAPATH_WORD_LENGTH + 1)}},
     "capabilities.datapath.ipsec"),
    ("too many datapath functions",
     {**GOOD, "datapath": {f"f{i}": "kernel" for i in range(limits.DATAPATH_FUNCTIONS + 1)}},
     "capabilities.datapath"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("capabilities", "target"), [c[1:] for c in BAD_CAPABILITIES], ids=[c[0] for c in BAD_CAPABILITIES]
)
def test_bad_capabilities_are_refused_and_change_nothing(seeded: Controller, capabilities: Any, target: str) -> None:
    token = register(seeded, "host1", "host", "198.18.0.11", capabilities=GOOD)
    before = seeded.dump()
    body = {"role": "host", "address": "198.18.0.11", "capabilities": capabilities}
    response = seeded.client.post("/v1/nodes/host1/register", json=body, headers=seeded.headers(token))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["target"]) == ("InvalidRequestFormat", target), error
    assert seeded.dump() == before
    assert node_entry(seeded, "host1")["datapath"] == choose_datapath(PROBED)


def test_a_fence_the_watchdog_made_is_recorded_once_when_the_node_reports_it(seeded: Controller) -> None:
    token = register(seeded, "gw1", "gateway", "198.18.0.51")
    fence = {"epoch": 3, "reason": "lease ending without a renewal: no MUX answers", "at": 1796320000.25}

    def report(lease: dict[str, Any]) -> None:
        body = {"appliedRevision": 0, "details": {"lease": lease}}
        assert seeded.client.post("/v1/nodes/gw1/status", json=body, headers=seeded.headers(token)).status_code == 200

    report({"epoch": 3, "fenced": False})
    report({"epoch": 3, "fenced": True, "lastFence": fence})
    report({"epoch": 4, "fenced": False, "lastFence": fence})  # unfenced at a new epoch: the same fence
    report({"epoch": 4, "fenced": False, "lastFence": {"epoch": 3, "at": "garbage"}})  # nothing it can tell of
    events = [e for e in seeded.admin("GET", "/events?limit=1000").json()["value"] if e["kind"] == "gateway.fenced"]
    assert [e["details"] for e in events] == [
        {"node": "gw1", "epoch": 3, "reason": fence["reason"], "at": "2026-12-03T17:46:40.250+00:00"}
    ]
