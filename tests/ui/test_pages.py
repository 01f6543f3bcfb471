"""The dashboard's pages in-process: who sees what, the 404 rule, the login, the live stream's parts."""

from __future__ import annotations

import pytest

from isthmus.ui.format import NONE
from tests.api.test_admin_and_agents import declare_fabric, register, tenant_world
from tests.conftest import SUB_B, Controller, net

pytestmark = pytest.mark.parametrize("controller", ["sqlite"], indirect=True)
CONNECTION = net("connections", "conn")


def page(c: Controller, path: str, token: str | None, **params: str) -> tuple[int, str]:
    c.client.cookies.clear()
    response = c.client.get(path, params=params, headers=c.headers(token), follow_redirects=False)
    return response.status_code, response.text


def _world(c: Controller) -> None:
    declare_fabric(c)
    tenant_world(c)
    node = c.admin("GET", "/placement").json()["placed"][0]["node"]
    token = register(c, node, "gateway", "198.18.0.51")
    child = {"state": "INSTALLED", "encryption": "AES_GCM_16", "encryptionKeySize": "256",
             "localTrafficSelectors": ["100.64.0.0/16"], "remoteTrafficSelectors": ["192.0.2.0/24"]}  # fmt: skip
    sa = {"state": "ESTABLISHED", "localEndpoint": "203.0.113.10", "remoteEndpoint": "198.51.100.20",
          "encryption": "AES_CBC", "encryptionKeySize": "256", "childSas": [child]}  # fmt: skip
    report = {"connectionStatus": "Connected", "ingressBytesTransferred": 1200, "egressBytesTransferred": 3400,
              "ikeSas": [sa]}  # fmt: skip
    sent = c.client.post(f"/v1/nodes/{node}/status", headers=c.headers(token),
                         json={"appliedRevision": 1, "connections": {CONNECTION: report}})  # fmt: skip
    assert sent.status_code == 200, sent.text


def test_the_operator_sees_the_fabric_pools_gateways_and_placement(seeded: Controller) -> None:
    _world(seeded)
    mux = register(seeded, "mux1", "mux", "198.18.0.21")
    report = {"appliedRevision": 1, "sessions": {"198.18.0.1": "Established"}, "details": {"announced": 7}}
    assert seeded.client.post("/v1/nodes/mux1/status", headers=seeded.headers(mux), json=report).status_code == 200
    response = seeded.client.get("/ui/fabric", headers=seeded.headers(seeded.operator))
    status, html = response.status_code, response.text
    assert status == 200 and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert float(response.headers["server-timing"].split("dur=")[1]) > 0
    assert 'data-role="active"' in html and 'data-role="standby"' in html and "mux1" in html and "host1" in html
    assert 'MUX mux1: <span class="state established">Established</span>' in html and "7 /32s" in html
    status, html = page(seeded, "/ui/placement", seeded.operator, drain="gw1")
    assert status == 200 and "Draining <strong>gw1</strong>" in html
    status, html = page(seeded, "/ui/connections", seeded.operator)
    assert status == 200 and 'data-connection="conn"' in html and "Connected" in html
    assert "ipsec · gw1" in html  # an operator sees the pool and node carrying each VNet gateway


def test_a_tenant_sees_only_its_own_connections_and_no_fabric(seeded: Controller) -> None:
    _world(seeded)
    status, html = page(seeded, "/ui/connections", seeded.tenant_a)
    assert status == 200 and 'data-connection="conn"' in html and "1.2 kB" in html
    assert 'data-vnet-gateway="gw" data-running="yes"' in html and "Pool · node" not in html  # no nodes for tenants
    status, html = page(seeded, "/ui/connection", seeded.tenant_a, id=CONNECTION)
    assert status == 200 and "Connected" in html and "psk" not in html
    assert "IKE SA ESTABLISHED" in html and "100.64.0.0/16 ↔ 192.0.2.0/24" in html
    status, html = page(seeded, "/ui/connections", seeded.tenant_b)
    assert status == 200 and 'data-connection="conn"' not in html and "data-vnet-gateway" not in html
    elsewhere = net("connections", "conn", sub=SUB_B)
    for path, params in (("/ui/connection", {"id": CONNECTION}), ("/ui/fabric", {}), ("/ui/placement", {}),
                         ("/ui/connection", {"id": elsewhere}), ("/ui/nothing", {})):  # fmt: skip
        status, html = page(seeded, path, seeded.tenant_b, **params)
        assert status == 404 and "Not found" in html and "conn" not in html.split("<main", 1)[1], path


def test_no_token_or_a_bad_one_is_the_login_page(seeded: Controller) -> None:
    status, _html = page(seeded, "/ui/fabric", None)
    assert status == 303
    seeded.client.cookies.set("isthmus_token", "not-a-token", path="/ui")
    response = seeded.client.get("/ui/connections", follow_redirects=True)
    assert response.status_code == 200 and "Log in" in response.text and "no longer valid" in response.text
    refused = seeded.client.post("/ui/login", data={"token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 401 and "not valid" in refused.text and "Traceback" not in refused.text
    accepted = seeded.client.post("/ui/login", data={"token": seeded.tenant_a}, follow_redirects=False)
    assert accepted.status_code == 303 and "isthmus_token" in accepted.headers["set-cookie"]
    assert "HttpOnly" in accepted.headers["set-cookie"]


def test_the_live_stream_needs_a_token_and_sends_the_pages_live_part(seeded: Controller) -> None:
    _world(seeded)
    seeded.client.cookies.clear()
    assert seeded.client.get("/ui/live", params={"page": "fabric"}).status_code == 401
    assert (
        seeded.client.get("/ui/live", params={"page": "nope"}, headers=seeded.headers(seeded.operator)).status_code
        == 404
    )
    with seeded.client.stream(
        "GET", "/ui/live", params={"page": "fabric"}, headers=seeded.headers(seeded.operator)
    ) as s:
        lines = []
        for line in s.iter_lines():
            lines.append(line)
            if line.startswith("data:") and "data-gateway" in line:
                break
            assert len(lines) < 500
    assert "retry: 1000" in lines and "event: main" in lines


def test_the_chart_is_drawn_from_the_reports_as_they_arrive(seeded: Controller) -> None:
    _world(seeded)
    st = seeded.client.app.state.isthmus  # type: ignore[attr-defined]
    st.throughput.spacing = 0.0  # every report a sample, however soon after the last
    node = seeded.admin("GET", "/placement").json()["placed"][0]["node"]
    token = register(seeded, node, "gateway", "198.18.0.51")
    report = {"connectionStatus": "Connected", "ingressBytesTransferred": 901200, "egressBytesTransferred": 3400}
    sent = seeded.client.post(f"/v1/nodes/{node}/status", headers=seeded.headers(token),
                              json={"appliedRevision": 1, "connections": {CONNECTION: report}})  # fmt: skip
    assert sent.status_code == 200, sent.text
    status, html = page(seeded, "/ui/connections", seeded.tenant_a)
    assert status == 200 and '<polyline class="in"' in html and f"in {NONE}" not in html
