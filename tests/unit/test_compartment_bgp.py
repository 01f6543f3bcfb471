"""The compartment's bgpd driven by differences: the lines a pass sends, what it takes from a site, Azure's shapes."""

from __future__ import annotations

from isthmus.linux.compartment_bgp import Learned, Neighbor, Session, Speaker, acceptable, changes, duration, report

SITE = Neighbor("198.19.1.2", 65050, "198.19.1.1", "/subscriptions/s/conn/a", "l3abc")
OTHER = Neighbor("198.19.0.2", 4_200_000_000, "198.19.0.1", "/subscriptions/s/conn/b", "gtabc")
SPEAKER = Speaker(65515, "203.0.113.5", (SITE,), ("100.64.0.0/16",))


def test_a_new_bgpd_gets_its_neighbour_and_networks() -> None:
    lines = changes(SPEAKER, {}, [])
    assert lines[0] == "router bgp 65515"
    assert " neighbor 198.19.1.2 remote-as 65050" in lines
    assert " neighbor 198.19.1.2 update-source 198.19.1.1" in lines
    assert f" neighbor 198.19.1.2 description {SITE.tag}" in lines
    assert lines[-3:] == [" address-family ipv4 unicast", "  network 100.64.0.0/16", " exit-address-family"]


def test_what_runs_already_takes_no_line() -> None:
    assert changes(SPEAKER, {SITE.address: SITE.tag}, ["100.64.0.0/16"]) == []


def test_a_second_site_leaves_the_first_alone() -> None:
    two = Speaker(65515, "203.0.113.5", (OTHER, SITE), ("100.64.0.0/16",))
    lines = changes(two, {SITE.address: SITE.tag}, ["100.64.0.0/16"])
    assert all(OTHER.address in line for line in lines[1:])
    assert " neighbor 198.19.0.2 remote-as 4200000000" in lines  # 4-byte ASNs


def test_a_changed_site_is_made_anew_and_a_removed_one_goes() -> None:
    moved = Neighbor(SITE.address, 65051, SITE.local, SITE.connection, SITE.device)
    running = {SITE.address: SITE.tag, "198.19.9.9": "isthmus-old"}
    lines = changes(
        Speaker(65515, "203.0.113.5", (moved,), ("100.64.0.0/16",)), running, ["100.64.0.0/16", "100.65.0.0/16"]
    )
    assert lines.index(" no neighbor 198.19.1.2") < lines.index(" neighbor 198.19.1.2 remote-as 65051")
    assert " no neighbor 198.19.9.9" in lines
    assert "  no network 100.65.0.0/16" in lines


def test_an_ipsec_site_is_reached_through_the_tunnel() -> None:
    behind = Neighbor("192.0.2.61", 65050, "100.64.255.4", "/subscriptions/s/conn/c", None, multihop=True)
    assert " neighbor 192.0.2.61 ebgp-multihop 2" in behind.lines()
    assert behind.tag != Neighbor("192.0.2.61", 65050, "100.64.255.4", "c", None).tag


def _learned(*networks: str) -> list[Learned]:
    return [Learned(n, "198.19.1.2", "65050", "IGP") for n in networks]


def test_a_site_cannot_take_the_vnets_own_space_or_the_default_route() -> None:
    taken, dropped = acceptable(_learned("0.0.0.0/0", "100.64.1.0/24", "100.0.0.0/8", "192.0.2.0/26"),
                                ["100.64.0.0/16"], 150)  # fmt: skip
    assert [r.network for r in taken] == ["192.0.2.0/26"] and dropped == 0


def test_past_the_cap_the_rest_is_dropped_and_counted() -> None:
    routes = _learned(*(f"192.0.2.{i}/32" for i in range(200)))
    taken, dropped = acceptable(routes, ["100.64.0.0/16"], 150)
    assert len(taken) == 150 and dropped == 50
    assert taken[0].network == "192.0.2.0/32"


def test_connected_duration_is_a_timespan() -> None:
    assert duration(0) == "00:00:00.0000000"
    assert duration(3_723_456) == "01:02:03.4560000"
    assert duration(90_000_000) == "25:00:00.0000000"


def test_the_report_in_azures_shapes() -> None:
    session = Session("Established", 5_000, 7, 9, tuple(_learned("192.0.2.0/26")), (("100.64.0.0/16", ""),))
    body = report(SITE, session, _learned("192.0.2.0/26"), 0, 65515)
    assert body["peer"] == {"localAddress": "198.19.1.1", "neighbor": "198.19.1.2", "asn": 65050, "state": "Connected",
                            "connectedDuration": "00:00:05.0000000", "routesReceived": 1, "messagesSent": 7,
                            "messagesReceived": 9}  # fmt: skip
    assert body["learnedRoutes"] == [{"localAddress": "198.19.1.1", "sourcePeer": "198.19.1.2", "weight": 0,
                                      "network": "192.0.2.0/26", "nextHop": "198.19.1.2", "origin": "EBgp",
                                      "asPath": "65050"}]  # fmt: skip
    assert body["advertisedRoutes"][0]["asPath"] == "65515" and body["advertisedRoutes"][0]["nextHop"] == "198.19.1.1"
    unknown = report(SITE, None, None, 0, 65515)
    assert unknown["peer"]["state"] == "Unknown" and unknown["learnedRoutes"] is None
    assert Session("Active", 0, 0, 0, (), ()).complete is False
    assert Session("Established", 3_000, 0, 0, (), ()).complete  # up long enough: its UPDATEs have come
    assert not Session("Established", 1_000, 0, 0, (), ()).complete  # up 1 s: its UPDATEs may not have come
