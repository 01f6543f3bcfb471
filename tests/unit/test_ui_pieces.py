"""The dashboard's pure pieces: the events filter, a failover told as one story, throughput from counters."""

from __future__ import annotations

from isthmus.api.throughput import Throughput, sparkline
from isthmus.ui import format as fmt
from isthmus.ui.stories import matching, stories


def event(at: str, kind: str, message: str, subject: str = "", **details: object) -> dict[str, object]:
    return {"id": 0, "at": f"2026-12-07T03:00:{at}+00:00", "kind": kind, "message": message, "subject": subject,
            **({"details": details} if details else {})}  # fmt: skip


FAILOVER = [
    event("00.000", "connections.connected", "connection c1 on gw1: Unknown -> Connected", "/s/x/connections/c1"),
    event(
        "10.000",
        "lease.lost",
        "gateway gw1 on n1: lease epoch 3 ended, 620 ms after its last renewal",
        "/admin/gateways/gw1",
        node="n1",
        gateway="gw1",
        epoch=3,
        silentMs=620,
    ),
    event("10.015", "placement.moved", "gateway gw1 is Failed: moved to standby gw2", "/s/x/virtualNetworkGateways/v"),
    event("10.016", "placement.role", "gateway gw2 is active: took over from gw1", "/admin/gateways/gw2"),
    event(
        "10.330", "connections.connected", "connection c1 on n2: Connected on n1 -> Connected", "/s/x/connections/c1"
    ),
    event("55.000", "connections.connected", "connection c9 on n2: Unknown -> Connected", "/s/x/connections/c9"),
]


def test_a_failover_is_one_story_of_the_steps_that_followed_it_and_a_drain_another() -> None:
    drain = [event("12.000", "drain.started", "gateway gw3 drains", "/admin/gateways/gw3", gateway="gw3"),
             event("12.100", "placement.role", "gateway gw4 is active", "/admin/gateways/gw4")]  # fmt: skip
    story, drained = stories(FAILOVER[:5] + drain + FAILOVER[5:])
    assert drained.title == "drain of gw3" and [s.event["kind"] for s in drained.steps] == ["placement.role"]
    assert story.title == "failover of gw1" and story.silent_ms == 620
    assert [s.event["kind"] for s in story.steps] == ["placement.moved", "placement.role", "connections.connected"]
    assert [(s.after_start_ms, s.after_previous_ms) for s in story.steps] == [(15, 15), (16, 1), (330, 314)]
    assert story.total_ms == 330  # the connection 45 s later is another matter


def test_the_filter_finds_a_name_in_the_subject_the_details_or_a_word_of_the_message() -> None:
    assert [e["kind"] for e in matching(FAILOVER, ["n1"])] == ["lease.lost", "connections.connected"]
    assert len(matching(FAILOVER, ["gw2"])) == 2  # the role change's subject; "standby gw2" in the move
    assert len(matching(FAILOVER, ["c1"])) == 2 and len(matching(FAILOVER, [])) == len(FAILOVER)
    assert not matching(FAILOVER, ["gw"])  # a word, not a part of one


def test_throughput_is_the_rate_between_samples_and_a_counter_that_went_back_gives_none() -> None:
    seen = Throughput(window=60.0, spacing=2.0)
    for at, inbound in ((0.0, 0), (1.0, 999), (5.0, 5000), (10.0, 15000), (15.0, 100)):  # 1.0: too soon after 0
        seen.record({"c": {"ingressBytesTransferred": inbound, "egressBytesTransferred": 0}}, now=at)
    assert seen.rates("c", now=15.0) == [(8000.0, 0.0), (16000.0, 0.0)]
    assert seen.rates("c", now=74.0) == []  # the window has passed: only the last sample is in it
    seen.record({"d": {}}, now=100.0)
    assert "c" not in seen.samples  # not reported for a whole window: forgotten
    assert sparkline([0.0, 1.0], width=10, height=10) == "0.0,9.0 10.0,1.0" and sparkline([]) == ""


def test_numbers_are_written_for_people() -> None:
    assert (fmt.size(1234567), fmt.bits(8000), fmt.bits(None), fmt.mbps(100000)) == ("1.2 MB", "8.0 kbit/s", fmt.NONE,
                                                                                    "100 Mbit/s")  # fmt: skip
    assert (fmt.last("/a/b/gw1"), fmt.ms(320), fmt.ms(12500), fmt.css("NotConnected")) == ("gw1", "320 ms", "12.5 s",
                                                                                           "notconnected")  # fmt: skip
    assert fmt.owner("/subscriptions/5f2c0a4e-0000-4000-8000-00000000de0a/resourceGroups/demo/providers/N/c/gw") == (
        "demo · 5f2c0a4e"
    )
