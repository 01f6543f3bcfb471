"""The bad-link fault's pure parts: the tc command degrade runs, its argument checks, reading tc's answer."""

from __future__ import annotations

import re

import pytest

from isthmus.lab.faults import FaultUnavailable, netem_command, netem_unavailable, root_qdisc_kind
from isthmus.linux.run import LinuxError


def test_a_delay_alone() -> None:
    assert netem_command("eth0", delay_ms=100) == [
        "tc",
        "qdisc",
        "replace",
        "dev",
        "eth0",
        "root",
        "netem",
        "delay",
        "100ms",
    ]


def test_every_option_in_netem_order() -> None:
    command = netem_command(
        "eth1", delay_ms=20.5, jitter_ms=5, loss_percent=0.5, reorder_percent=25, duplicate_percent=1
    )
    assert command[7:] == ["delay", "20.5ms", "5ms", "loss", "0.5%", "reorder", "25%", "duplicate", "1%"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss_percent": 100}, None),
        ({"duplicate_percent": 100}, None),
        ({"delay_ms": 60_000}, None),
        ({"delay_ms": -1}, "delay_ms must be a number of milliseconds from 0 to 60000"),
        ({"delay_ms": 60_001}, "delay_ms must be"),
        ({"delay_ms": True}, "delay_ms must be"),
        ({"delay_ms": "100"}, "delay_ms must be"),
        ({"loss_percent": 101}, "loss_percent must be a percentage from 0 to 100"),
        ({"duplicate_percent": -0.1}, "duplicate_percent must be a percentage"),
        ({"delay_ms": 10, "reorder_percent": 100.5}, "reorder_percent must be a percentage"),
        ({"jitter_ms": 5, "loss_percent": 1}, "jitter_ms needs a delay_ms"),
        ({"delay_ms": 5, "jitter_ms": 6}, "jitter_ms (6) must not exceed delay_ms (5)"),
        ({"reorder_percent": 25, "loss_percent": 1}, "reorder_percent needs a delay_ms"),
        ({}, "nothing to degrade"),
    ],
)
def test_arguments_are_checked(options: dict[str, float], message: str | None) -> None:
    if message is None:
        netem_command("eth0", **options)
        return
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        netem_command("eth0", **options)


def test_a_device_is_needed() -> None:
    with pytest.raises(ValueError, match="needs a device"):
        netem_command("", delay_ms=1)


def test_the_root_qdisc_kind() -> None:
    assert root_qdisc_kind('[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]') == "noqueue"
    netem = '[{"kind":"netem","handle":"8001:","root":true,"refcnt":2,"options":{"limit":1000,"delay":{"delay":0.1}}}]'
    assert root_qdisc_kind(netem) == "netem"
    assert root_qdisc_kind("") is None
    assert root_qdisc_kind('[{"kind":"fq_codel","handle":"0:","parent":"8001:"}]') is None


def test_the_unavailable_error_names_netem_the_node_and_where_it_exists() -> None:
    error = netem_unavailable("r1")
    assert isinstance(error, LinuxError) and isinstance(error, FaultUnavailable)
    text = str(error)
    assert "netem" in text and "node r1" in text and "real-kernel tier" in text and "nothing was changed" in text
    assert "this host" in str(netem_unavailable(None))
