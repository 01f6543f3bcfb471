"""The datapath a node chooses follows from its capabilities alone, and a probe that cannot run leaves the
registration without capabilities instead of stopping the agent."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from isthmus.linux import datapath
from isthmus.linux.capabilities import Capabilities
from isthmus.linux.datapath import choose_datapath, probe_for_registration, registration_capabilities
from isthmus.linux.run import LinuxError

EVERYTHING = Capabilities(kernel="6.1.0-test", **{f.name: True for f in fields(Capabilities) if f.name != "kernel"})
NOTHING = Capabilities(kernel="6.1.0-test", **{f.name: False for f in fields(Capabilities) if f.name != "kernel"})


def test_a_full_kernel_gets_every_kernel_datapath() -> None:
    assert choose_datapath(EVERYTHING) == {
        "ipsec": "xfrm",
        "gre": "ip_gre",
        "vlan": "8021q",
        "overlay": "vxlan",
        "filter": "nftables",
        "fastpath": "flowtable",
    }


def test_a_bare_kernel_falls_back_or_says_unavailable() -> None:
    assert choose_datapath(NOTHING) == {
        "ipsec": "libipsec",
        "gre": "gre_tun",
        "vlan": "unavailable",
        "overlay": "unavailable",
        "filter": "unavailable",
        "fastpath": "none",
    }


@pytest.mark.parametrize(
    ("missing", "function", "fallback"),
    [
        ("esp", "ipsec", "libipsec"),
        ("gre", "gre", "gre_tun"),
        ("vlan", "vlan", "unavailable"),
        ("vxlan", "overlay", "unavailable"),
        ("nft_flowtable", "fastpath", "none"),
    ],
)
def test_each_missing_feature_changes_only_its_own_function(missing: str, function: str, fallback: str) -> None:
    without: dict[str, Any] = {missing: False}
    chosen = choose_datapath(replace(EVERYTHING, **without))
    assert chosen == {**choose_datapath(EVERYTHING), function: fallback}


def test_no_nftables_means_no_flowtable_either() -> None:
    assert choose_datapath(replace(EVERYTHING, nft=False))["fastpath"] == "none"


def test_the_registration_carries_the_capabilities_and_the_choice() -> None:
    carried = registration_capabilities(NOTHING)
    assert carried == {**NOTHING.to_json(), "datapath": choose_datapath(NOTHING)}
    assert Capabilities.from_json(carried) == NOTHING


@pytest.mark.parametrize("error", [LinuxError("ip: Operation not permitted"), PermissionError("modprobe")])
def test_a_probe_that_cannot_run_registers_without_capabilities(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def failing() -> Capabilities:
        raise error

    monkeypatch.setattr(datapath, "probe", failing)
    assert probe_for_registration() is None


def test_a_probe_that_runs_is_what_the_registration_carries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datapath, "probe", lambda: EVERYTHING)
    assert probe_for_registration() == registration_capabilities(EVERYTHING)
