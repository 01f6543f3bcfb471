"""What a BGP connection's site advertises, reported by the gateway carrying it: kept as observed state, in the
documents of every host of the VNet (through a failover too), answered by Azure's getBgpPeerStatus,
getLearnedRoutes and getAdvertisedRoutes to the owner only; events without noise."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from isthmus.model import limits
from isthmus.store import tables
from tests.api.test_admin_and_agents import register
from tests.api.test_bgp_sites import GATEWAY, GRE, bgp_connection, bgp_gateway, bgp_world
from tests.conftest import API, SUB_A, Controller, net

CONNECTION = net("connections", "bgp")
KEY = CONNECTION.lower()
PEER = {"localAddress": "198.19.1.1", "neighbor": "198.19.1.2", "asn": 65050, "state": "Connected",
        "connectedDuration": "00:01:02.0000000", "routesReceived": 3, "messagesSent": 10,
        "messagesReceived": 12}  # fmt: skip
ADVERTISED = [{"localAddress": "198.19.1.1", "network": "100.64.0.0/16", "nextHop": "198.19.1.1", "origin": "Igp",
               "asPath": "65515", "weight": 0}]  # fmt: skip


def route(network: str) -> dict[str, Any]:
    return {"localAddress": "198.19.1.1", "network": network, "nextHop": "198.19.1.2", "sourcePeer": "198.19.1.2",
            "origin": "EBgp", "asPath": "65050", "weight": 0}  # fmt: skip


def world(c: Controller) -> tuple[str, str, str]:
    """bgp_world with a GRE BGP connection; (its carrier, that node's token, host1's token)."""
    bgp_world(c)
    made = c.call("PUT", CONNECTION, bgp_connection("GRE", "gre-site", **GRE))
    assert made.status_code == 201, made.text
    node = carrier(c)
    return node, register(c, node, "gateway", "198.18.0.51"), register(c, "host1", "host", "198.18.0.11")


def carrier(c: Controller) -> str:
    [placed] = [p for p in c.admin("GET", "/placement").json()["placed"] if p["virtualNetworkGateway"].lower() ==
                GATEWAY.lower()]  # fmt: skip
    return str(placed["node"])


def report(c: Controller, node: str, token: str, bgp: dict[str, Any] | None, status: str = "Connected") -> Any:
    connection: dict[str, Any] = {"connectionStatus": status}
    if bgp is not None:
        connection["bgp"] = bgp
    return c.client.post(f"/v1/nodes/{node}/status", headers=c.headers(token),
                         json={"appliedRevision": 1, "connections": {CONNECTION: connection}})  # fmt: skip


def site_prefixes(c: Controller, token: str) -> tuple[str, list[str]]:
    """(the node host1 routes the VNet's sites to, the prefixes)."""
    doc = c.client.get("/v1/nodes/host1/desired", headers=c.headers(token)).json()
    [vnet] = doc["virtualNetworks"]
    [sites] = vnet["siteRoutes"]
    return sites["node"], sites["prefixes"]


def action(c: Controller, name: str, peer: str | None = None, token: str | None = None) -> Any:
    """POST GATEWAY/name[?peer=…] as the SDK sends it."""
    params = {"api-version": API, **({"peer": peer} if peer is not None else {})}
    return c.client.post(f"{GATEWAY}/{name}", params=params, headers=c.headers(token or c.tenant_a))


def revision(c: Controller) -> int:
    with c.engine.connect() as conn:
        return int(conn.execute(text("SELECT value FROM revision WHERE id = 1")).scalar_one())


def learned_rows(c: Controller) -> list[Any]:
    with c.engine.connect() as conn:
        return list(conn.execute(select(tables.learned_routes.c.connection, tables.learned_routes.c.prefixes)))


def test_learned_routes_reach_every_host_of_the_vnet_and_stay_until_the_site_changes_them(seeded: Controller) -> None:
    node, token, host = world(seeded)
    assert site_prefixes(seeded, host) == (node, ["192.0.2.0/24"])  # the IPsec site's declared prefix
    learned = [route("192.0.2.128/25"), route("198.51.100.0/24"), route("0.0.0.0/0"), route("100.64.1.0/24"),
               route("198.19.128.0/24")]  # fmt: skip
    sent = report(seeded, node, token, {"peer": PEER, "learnedRoutes": learned, "advertisedRoutes": ADVERTISED})
    assert sent.status_code == 200, sent.text
    # Not the default route, nothing of the VNet's own space or the hosts' transit.
    assert site_prefixes(seeded, host) == (node, ["192.0.2.0/24", "192.0.2.128/25", "198.51.100.0/24"])
    at = revision(seeded)
    again = report(
        seeded, node, token, {"peer": {**PEER, "messagesSent": 11}, "learnedRoutes": list(reversed(learned))}
    )
    assert again.status_code == 200 and revision(seeded) == at  # the same set: nothing written, no document moves
    unknown = report(seeded, node, token, None)  # a report that knows nothing of BGP keeps what was learned
    assert unknown.status_code == 200 and site_prefixes(seeded, host)[1][-1] == "198.51.100.0/24"
    withdrawn = report(seeded, node, token, {"peer": PEER, "learnedRoutes": [route("198.51.100.0/24")]})
    assert withdrawn.status_code == 200
    assert site_prefixes(seeded, host)[1] == ["192.0.2.0/24", "198.51.100.0/24"]
    nothing = report(seeded, node, token, {"peer": PEER, "learnedRoutes": []})  # an authoritative empty set
    assert nothing.status_code == 200 and site_prefixes(seeded, host)[1] == ["192.0.2.0/24"]


def test_the_hosts_keep_the_learned_routes_through_a_failover(seeded: Controller) -> None:
    node, token, host = world(seeded)
    assert report(seeded, node, token, {"peer": PEER, "learnedRoutes": [route("198.51.100.0/24")]}).status_code == 200
    moved = seeded.admin("POST", "/placement/failover", {"virtualNetworkGateway": GATEWAY})
    assert moved.status_code == 200, moved.text
    standby = carrier(seeded)
    standby_token = register(seeded, standby, "gateway", "198.18.0.53")
    assert standby != node
    assert site_prefixes(seeded, host) == (standby, ["192.0.2.0/24", "198.51.100.0/24"])
    # The new carrier's session is not up yet: it knows no routes (null), and what was learned stays.
    rising = report(seeded, standby, standby_token, {"peer": {**PEER, "state": "Connecting"}, "learnedRoutes": None})
    assert rising.status_code == 200
    assert site_prefixes(seeded, host) == (standby, ["192.0.2.0/24", "198.51.100.0/24"])
    # The node it left may still speak of the connection once: its routes are no longer taken.
    late = report(seeded, node, token, {"peer": PEER, "learnedRoutes": []})
    assert late.status_code == 200, late.text  # it spoke of it in its last report: accepted, routes not taken
    assert site_prefixes(seeded, host)[1] == ["192.0.2.0/24", "198.51.100.0/24"]
    up = report(seeded, standby, standby_token, {"peer": PEER, "learnedRoutes": [route("192.0.2.128/25")]})
    assert up.status_code == 200 and site_prefixes(seeded, host)[1] == ["192.0.2.0/24", "192.0.2.128/25"]


def test_learned_routes_go_with_enable_bgp_and_with_the_connection(seeded: Controller) -> None:
    node, token, host = world(seeded)
    assert report(seeded, node, token, {"peer": PEER, "learnedRoutes": [route("198.51.100.0/24")]}).status_code == 200
    assert learned_rows(seeded) == [(KEY, "198.51.100.0/24")]
    body = bgp_connection("GRE", "gre-site", **GRE)
    body["properties"]["enableBgp"] = False
    assert seeded.call("PUT", CONNECTION, body).status_code == 200
    assert learned_rows(seeded) == [] and site_prefixes(seeded, host)[1] == ["192.0.2.0/24"]
    assert seeded.call("PUT", CONNECTION, bgp_connection("GRE", "gre-site", **GRE)).status_code == 200
    assert report(seeded, node, token, {"peer": PEER, "learnedRoutes": [route("198.51.100.0/24")]}).status_code == 200
    assert learned_rows(seeded) == [(KEY, "198.51.100.0/24")]
    assert seeded.call("DELETE", CONNECTION).status_code in (200, 202)
    assert learned_rows(seeded) == []
    assert site_prefixes(seeded, host)[1] == ["192.0.2.0/24"]


def test_a_report_past_the_bounds_is_refused_whole(seeded: Controller) -> None:
    node, token, _host = world(seeded)
    before = seeded.dump()
    flood = [route(f"192.0.2.{i}/32") for i in range(limits.BGP_LEARNED_ROUTES + 1)]
    for bad, where in (
        ({"peer": PEER, "learnedRoutes": flood}, "learnedRoutes"),
        ({"peer": {**PEER, "state": "Established"}}, "state"),
        ({"peer": {**PEER, "asn": "65050"}}, "asn"),
        ({"peer": PEER, "learnedRoutes": [route("192.0.2.1/24")]}, "network"),
        ({"peer": PEER, "learnedRoutes": [{**route("192.0.2.0/24"), "asPath": "65050;65051"}]}, "asPath"),
        ({"peer": PEER, "learnedRoutes": [{**route("192.0.2.0/24"), "secret": 1}]}, "secret"),
    ):
        refused = report(seeded, node, token, bad)
        assert refused.status_code == 400, refused.text
        assert where in refused.json()["error"]["target"], refused.json()
    assert seeded.dump() == before


def test_session_and_dropped_route_events_are_few_and_the_operator_sees_no_routes(seeded: Controller) -> None:
    node, token, _host = world(seeded)
    flood = {"peer": PEER, "learnedRoutes": [route("198.51.100.0/24")], "learnedRoutesDropped": 7}
    for _heartbeat in range(3):
        assert report(seeded, node, token, flood).status_code == 200
    assert report(seeded, node, token, {**flood, "peer": {**PEER, "state": "Idle"}}).status_code == 200
    scoped = seeded.admin("GET", f"/events?scope={SUB_A}&limit=100").json()["value"]
    kinds = [e["kind"] for e in scoped if e["subject"].lower() == KEY]
    assert kinds.count("connections.bgpConnected") == 1 and kinds.count("connections.bgpDisconnected") == 1
    [dropped] = [e for e in scoped if e["kind"] == "connections.bgpRoutesDropped"]
    assert "more than 150 routes; 7 dropped" in dropped["message"]
    nodes = seeded.admin("GET", "/nodes")
    assert nodes.status_code == 200 and "198.51.100.0/24" not in nodes.text and "65050" not in nodes.text


def test_azures_bgp_actions_answer_from_the_reports(seeded: Controller) -> None:
    node, token, _host = world(seeded)
    status = action(seeded, "getBgpPeerStatus")
    assert status.status_code == 200, status.text
    assert status.json()["value"] == [{"localAddress": "198.19.1.1", "neighbor": "198.19.1.2", "asn": 65050,
                                       "state": "Unknown", "connectedDuration": "", "routesReceived": 0,
                                       "messagesSent": 0, "messagesReceived": 0}]  # fmt: skip
    learned = [route("198.51.100.0/24")]
    assert report(seeded, node, token, {"peer": PEER, "learnedRoutes": learned, "advertisedRoutes": ADVERTISED}
                  ).status_code == 200  # fmt: skip
    assert action(seeded, "getBgpPeerStatus").json()["value"] == [PEER]
    assert action(seeded, "getBgpPeerStatus", "198.19.1.2").json()["value"] == [PEER]
    assert action(seeded, "getBgpPeerStatus", "198.19.9.9").json()["value"] == []
    routes = action(seeded, "getLearnedRoutes").json()["value"]
    networks = [(r["network"], r["origin"]) for r in routes]
    assert networks == [("100.64.0.0/16", "Network"), ("192.0.2.0/24", "Network"), ("198.51.100.0/24", "EBgp")]
    assert routes[-1] == learned[0] and routes[0]["localAddress"] == "100.64.255.4"
    advertised = action(seeded, "getAdvertisedRoutes", "198.19.1.2")
    assert advertised.status_code == 200 and advertised.json()["value"] == ADVERTISED
    missing = action(seeded, "getAdvertisedRoutes")
    assert missing.status_code == 400 and missing.json()["error"]["target"] == "peer"
    bad = action(seeded, "getBgpPeerStatus", "not-an-ip")
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "peer"
    # Another tenant reaches none of it; a gateway without BGP answers empty lists.
    other = action(seeded, "getLearnedRoutes", token=seeded.tenant_b)
    assert other.status_code == 404 and "198.51.100.0/24" not in other.text
    body = bgp_connection("GRE", "gre-site", **GRE)
    body["properties"]["enableBgp"] = False
    assert seeded.call("PUT", CONNECTION, body).status_code == 200
    assert bgp_gateway(seeded, enable=False).status_code == 200
    for name in ("getBgpPeerStatus", "getLearnedRoutes"):
        assert action(seeded, name).json() == {"value": []}
    assert action(seeded, "getAdvertisedRoutes", "198.19.1.2").json() == {"value": []}


def test_the_gateway_agents_own_shapes_are_taken_and_served_as_azures(seeded: Controller) -> None:
    """FRR's forms as the agent sends them: an AS path with spaces (Azure joins with '-'), an empty next hop or
    source peer, hours past 99 in connectedDuration."""
    node, token, _host = world(seeded)
    peer = {**PEER, "connectedDuration": "123:04:05.0060000"}
    learned = [{**route("198.51.100.0/24"), "asPath": "65050 65051", "nextHop": ""}]
    advertised = [{**ADVERTISED[0], "sourcePeer": "", "asPath": "65515 65050"}]
    sent = report(seeded, node, token, {"peer": peer, "learnedRoutes": learned, "learnedRoutesDropped": 0,
                                        "advertisedRoutes": advertised})  # fmt: skip
    assert sent.status_code == 200, sent.text
    [ebgp] = [r for r in action(seeded, "getLearnedRoutes").json()["value"] if r["origin"] == "EBgp"]
    assert ebgp["asPath"] == "65050-65051" and "nextHop" not in ebgp
    [out] = action(seeded, "getAdvertisedRoutes", "198.19.1.2").json()["value"]
    assert out["asPath"] == "65515-65050" and "sourcePeer" not in out
    assert action(seeded, "getBgpPeerStatus").json()["value"][0]["connectedDuration"] == "123:04:05.0060000"
