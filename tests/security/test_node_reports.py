"""A node's status report speaks only of that node's resources, at a revision the store has reached, in
bounded size; and a resource that keeps failing costs one event until it recovers.

Each test first sends the report that used to be accepted, and checks it is refused with an ARM error and
changes nothing in the store."""

from __future__ import annotations

from typing import Any

import pytest

from isthmus.api.nodes import REVISION_HEADER
from isthmus.model import limits
from isthmus.model.ids import normalize
from isthmus.store import tokens
from tests.conftest import SUB_B, Controller, net, vnet_body

VNET_A = net("virtualNetworks", "va")
NIC_A = net("networkInterfaces", "nica")
VNET_B = net("virtualNetworks", "vb", sub=SUB_B)
NIC_B = net("networkInterfaces", "nicb", sub=SUB_B)


def nic_body(vnet: str) -> dict[str, Any]:
    return {
        "location": "local",
        "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": vnet + "/subnets/s"}}}]},
    }


@pytest.fixture
def world(seeded: Controller) -> tuple[Controller, str, int]:
    """Host h1 carries tenant A's VNet and NIC, host h2 tenant B's; h1 registered and holding its document.
    Returns the controller, h1's token and the revision of h1's document."""
    c = seeded
    for host, address in (("h1", "198.18.0.11"), ("h2", "198.18.0.12")):
        assert c.admin("PUT", f"/hosts/{host}", {"properties": {"node": host, "address": address}}).status_code == 201
    for vnet, nic, token, host in ((VNET_A, NIC_A, c.tenant_a, "h1"), (VNET_B, NIC_B, c.tenant_b, "h2")):
        assert (
            c.call("PUT", vnet, vnet_body("100.64.0.0/16", subnets={"s": "100.64.1.0/24"}), token=token).status_code
            == 201
        )
        assert c.call("PUT", nic, nic_body(vnet), token=token).status_code == 201
        binding = {"properties": {"networkInterface": nic, "host": host}}
        assert c.admin("PUT", f"/portBindings/{nic.rsplit('/', 1)[1]}", binding).status_code == 201
    token = tokens.create(c.engine, "node", "h1")
    assert c.client.post("/v1/nodes/h1/register", json={"role": "host"}, headers=c.headers(token)).status_code == 200
    desired = c.client.get("/v1/nodes/h1/desired", headers=c.headers(token))
    assert desired.status_code == 200
    return c, token, int(desired.headers[REVISION_HEADER])


def report(c: Controller, token: str, body: dict[str, Any]) -> Any:
    return c.client.post("/v1/nodes/h1/status", json=body, headers=c.headers(token))


def refused(response: Any, code: str, target: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert (error["code"], error["target"]) == (code, target), error
    return error


def provisioning(c: Controller, path: str, token: str) -> str:
    return str(c.call("GET", path, token=token).json()["properties"]["provisioningState"])


def test_a_report_on_another_tenants_vnet_is_refused_whole_and_changes_nothing(
    world: tuple[Controller, str, int],
) -> None:
    c, token, revision = world
    before = c.dump()
    failed = {"state": "Failed", "message": "forged"}
    forged = report(c, token, {"appliedRevision": revision, "resources": {VNET_B: failed}})
    assert normalize(VNET_B) in refused(forged, "ResourceNotCarriedByNode", "resources")["message"]
    # With its own NIC alongside: still refused whole, the NIC's part not applied either.
    mixed = report(c, token, {"appliedRevision": revision, "resources": {NIC_A: failed, VNET_B: failed}})
    refused(mixed, "ResourceNotCarriedByNode", "resources")
    assert c.dump() == before
    assert provisioning(c, VNET_B, c.tenant_b) == "Succeeded"
    assert provisioning(c, NIC_A, c.tenant_a) == "Succeeded"


def test_invented_resources_are_refused_and_write_no_events(world: tuple[Controller, str, int]) -> None:
    c, token, revision = world
    before = c.dump()
    invented = {f"{VNET_A}-{i}": {"state": "Failed", "message": f"m{i}"} for i in range(2_000)}
    refused(report(c, token, {"appliedRevision": revision, "resources": invented}), "ResourceNotCarriedByNode",
            "resources")  # fmt: skip
    too_many = {f"/x/{i}": {"state": "Succeeded"} for i in range(limits.REPORT_RESOURCES + 1)}
    refused(report(c, token, {"appliedRevision": revision, "resources": too_many}), "InvalidRequestFormat",
            "resources")  # fmt: skip
    assert c.dump() == before


def test_an_applied_revision_past_the_store_is_refused(world: tuple[Controller, str, int]) -> None:
    c, token, revision = world
    before = c.dump()
    ahead = report(c, token, {"appliedRevision": revision + 1_000_000})
    refused(ahead, "InvalidAppliedRevision", "appliedRevision")
    assert c.dump() == before
    assert report(c, token, {"appliedRevision": revision}).status_code == 200


def test_details_and_daemons_are_bounded(world: tuple[Controller, str, int]) -> None:
    c, token, revision = world
    before = c.dump()
    big = {"blob": "x" * limits.REPORT_DETAILS_BYTES}
    refused(report(c, token, {"appliedRevision": revision, "details": big}), "InvalidRequestFormat", "details")
    daemons = {f"d{i}": "ok" for i in range(limits.REPORT_DAEMONS + 1)}
    refused(report(c, token, {"appliedRevision": revision, "daemons": daemons}), "InvalidRequestFormat", "daemons")
    assert c.dump() == before
    fine = {"appliedRevision": revision, "details": {"blob": "x" * 1000}, "daemons": {"nft": "ok"}}
    assert report(c, token, fine).status_code == 200
    shown = next(n for n in c.admin("GET", "/nodes").json()["value"] if n["name"] == "h1")
    assert shown["status"]["details"] == {"blob": "x" * 1000}


def test_a_resource_failing_with_changing_messages_is_one_event_until_it_recovers(
    world: tuple[Controller, str, int],
) -> None:
    c, token, revision = world

    def events(kind: str) -> list[dict[str, Any]]:
        value = c.admin("GET", "/events?limit=1000").json()["value"]
        return [e for e in value if e["kind"] == kind and e["subject"] == normalize(NIC_A)]

    for attempt in range(20):
        failing = {NIC_A: {"state": "Failed", "message": f"attempt {attempt}: File exists"}}
        assert report(c, token, {"appliedRevision": revision, "resources": failing}).status_code == 200
    assert len(events("apply.failed")) == 1
    nic = c.call("GET", NIC_A).json()["properties"]
    assert nic["provisioningState"] == "Failed"
    applied = {NIC_A: {"state": "Succeeded"}, VNET_A: {"state": "Succeeded"}}
    assert report(c, token, {"appliedRevision": revision, "resources": applied}).status_code == 200
    assert provisioning(c, NIC_A, c.tenant_a) == "Succeeded"
    assert len(events("apply.recovered")) == 1
    failing = {NIC_A: {"state": "Failed", "message": "again"}}
    assert report(c, token, {"appliedRevision": revision, "resources": failing}).status_code == 200
    assert len(events("apply.failed")) == 2


def test_a_report_one_change_behind_still_speaks_of_what_the_node_carried(world: tuple[Controller, str, int]) -> None:
    """An agent reports the document it applied last: a NIC just moved off h1 may still be in it."""
    c, token, revision = world
    applied = {NIC_A: {"state": "Succeeded"}, VNET_A: {"state": "Succeeded"}}
    assert report(c, token, {"appliedRevision": revision, "resources": applied}).status_code == 200
    moved = {"properties": {"networkInterface": NIC_A, "host": "h2"}}
    assert c.admin("PUT", "/portBindings/nica", moved).status_code == 200
    assert report(c, token, {"appliedRevision": revision, "resources": applied}).status_code == 200
    # Two reports later the node no longer speaks of it.
    assert report(c, token, {"appliedRevision": revision}).status_code == 200
    refused(report(c, token, {"appliedRevision": revision, "resources": applied}), "ResourceNotCarriedByNode",
            "resources")  # fmt: skip
