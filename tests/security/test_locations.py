"""`location` is one of the operator's location names (default `local`), with Azure's error otherwise, and
the polling URLs a delete answers with are built from ids, never from text a client sent."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import SUB_A, Controller, net, rg, vnet_body

VNET = net("virtualNetworks", "v")
BAD = ["mars", "lo\u00e7al\u4e2d", "local\r\nX-Injected: 1", "local\x00", "a/../../x", "x" * 5000]


@pytest.mark.parametrize("location", BAD, ids=range(len(BAD)))
def test_unknown_location_is_refused_and_nothing_written(seeded: Controller, location: str) -> None:
    before = seeded.dump()
    body = vnet_body("100.64.0.0/16")
    body["location"] = location
    response = seeded.call("PUT", VNET, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "LocationNotAvailableForResourceType"
    group = seeded.call("PUT", rg(group="rg2"), {"location": location}, api_version="2024-11-01")
    assert group.status_code == 400, group.text
    assert group.json()["error"]["code"] == "LocationNotAvailableForResourceGroup"
    assert seeded.dump() == before


def test_location_is_normalised_as_arm_does(seeded: Controller) -> None:
    body = vnet_body("100.64.0.0/16")
    body["location"] = "Local"
    created = seeded.call("PUT", VNET, body)
    assert created.status_code == 201
    assert created.json()["location"] == "local"


def test_an_existing_group_keeps_its_location(seeded: Controller) -> None:
    response = seeded.call("PUT", rg(), {"location": "elsewhere"}, api_version="2024-11-01")
    assert response.status_code == 400


def test_delete_polling_urls_are_built_from_ids(seeded: Controller) -> None:
    assert seeded.call("PUT", VNET, vnet_body("100.64.0.0/16")).status_code == 201
    deleted = seeded.call("DELETE", VNET)
    assert deleted.status_code == 202
    for header in ("Azure-AsyncOperation", "Location"):
        url = urlsplit(deleted.headers[header])
        assert url.path.startswith(f"/subscriptions/{SUB_A}/providers/Microsoft.Network/locations/local/operation")
        assert seeded.call("GET", url.path).status_code in (200, 204)
