"""The fence-or-hold rule a gateway applies when its renewals fail (agents/witness.py), and the MUX's
streak of hearing the controller."""

from __future__ import annotations

from isthmus.agents.witness import CONFIRM_S, ControllerContact, Testimony, verdict


def hears(streak: float) -> Testimony:
    return Testimony("mux1", 0.05, streak, ())


def deaf() -> Testimony:
    return Testimony("mux1", 30.0, 0.0, ())


NOW = 1000.0


def test_cut_off_from_a_controller_the_muxes_hear_all_along_fences_at_once() -> None:
    assert verdict([deaf(), hears(streak=60)], failing_since=NOW - 0.4, now=NOW, lease_left=0.2) == "fence"


def test_a_mux_that_heard_the_controller_just_as_it_stopped_proves_nothing() -> None:
    stopped = Testimony("mux1", 0.45, 60.0, ())  # its last answer came 50 ms after the gateway's first failure
    assert verdict([stopped], failing_since=NOW - 0.5, now=NOW, lease_left=0.1) == "wait"


def test_a_controller_just_back_from_an_outage_is_renewed_with_first() -> None:
    assert verdict([hears(streak=0.2)], failing_since=NOW - 30, now=NOW, lease_left=-29) == "wait"
    # ... but renewals still failing CONFIRM_S after it came back: this gateway is the one cut off
    assert verdict([hears(streak=CONFIRM_S)], failing_since=NOW - 30, now=NOW, lease_left=-29) == "fence"


def test_nobody_hears_the_controller_holds_once_the_lease_ends() -> None:
    assert verdict([deaf(), deaf()], failing_since=NOW - 0.4, now=NOW, lease_left=0.2) == "wait"
    assert verdict([deaf(), deaf()], failing_since=NOW - 0.7, now=NOW, lease_left=-0.1) == "hold"


def test_no_mux_answers_fences_when_the_lease_ends() -> None:
    assert verdict([], failing_since=NOW - 0.4, now=NOW, lease_left=0.2) == "wait"
    assert verdict([], failing_since=NOW - 0.7, now=NOW, lease_left=0.0) == "fence"


def test_a_streak_begins_after_a_break() -> None:
    contact = ControllerContact(client=None)  # type: ignore[arg-type]
    assert contact.streak() == 0.0 and contact.age() is None
    import time

    now = time.monotonic()
    contact.heard(now - 2.0)
    contact.heard(now - 0.05)  # a break of 1.95 s: a new streak
    assert contact.streak_began == now - 0.05
    contact.heard(now)
    assert contact.streak_began == now - 0.05 and 0.0 < contact.streak() < 0.5
