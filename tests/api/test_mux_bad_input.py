"""Operator input for MUXes: an invalid ASN, router id or peer address is a 4xx naming the field, and
changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Controller

GOOD: dict[str, Any] = {"node": "mux9", "asn": 65010, "routerId": "198.18.0.19",
                        "peers": [{"address": "198.18.0.1", "asn": 65000}]}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"asn": 0}, "asn"),
        ({"asn": 4294967296}, "asn"),
        ({"asn": "sixty"}, "asn"),
        ({"routerId": "2001:db8::1"}, "routerId"),
        ({"routerId": "198.18.0.300"}, "routerId"),
        ({"peers": [{"address": "not-an-address", "asn": 65000}]}, "peers"),
        ({"peers": [{"address": "198.18.0.1", "asn": 0}]}, "peers"),
        ({"peers": [{"address": "198.18.0.1", "asn": 65000}, {"address": "198.18.0.1", "asn": 65001}]}, "peers"),
    ],
)
def test_bad_mux_is_refused_naming_the_field(seeded: Controller, change: dict[str, Any], field: str) -> None:
    before = seeded.dump()
    answer = seeded.admin("PUT", "/loadBalancerMuxes/mux9", {"properties": {**GOOD, **change}})
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert field in error["target"], error
    assert seeded.dump() == before
    assert seeded.admin("PUT", "/loadBalancerMuxes/mux9", {"properties": GOOD}).status_code == 201
