"""ARM ids and the controller's path folding: pure string work."""

from __future__ import annotations

import pytest

from isthmus.api.app import canonical_path
from isthmus.model import ids

SUB = "00000000-0000-0000-0000-00000000000a"


def test_parse_top_level_and_child() -> None:
    top = ids.parse(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v")
    assert top == ids.ResourceId(SUB, "rg", "virtualNetworks", "v")
    child = ids.parse(f"/SUBSCRIPTIONS/{SUB}/resourcegroups/rg/providers/microsoft.network/virtualNetworks/v/subnets/a")
    assert child is not None and child.child_name == "a" and child.parent == top
    assert str(top) == f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
    assert top is not None and top.key == str(top).lower()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "nonsense",
        f"/subscriptions/{SUB}/resourceGroups/rg",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        f"/subscriptions/{SUB}/resourceGroups//providers/Microsoft.Network/virtualNetworks/v",
    ],
)
def test_parse_rejects(text: str) -> None:
    assert ids.parse(text) is None


def test_canonical_path_folds_fixed_words_only() -> None:
    path = f"/SUBSCRIPTIONS/{SUB}/resourcegroups/RG/providers/microsoft.network/virtualnetworks/MyNet/SUBNETS/Subnets"
    assert canonical_path(path) == (
        f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/MyNet/subnets/Subnets"
    )
    assert canonical_path(f"/subscriptions/{SUB}/resourceGroups") == f"/subscriptions/{SUB}/resourcegroups"
    listing = f"/subscriptions/{SUB}/providers/microsoft.network/publicipaddresses"
    assert canonical_path(listing) == f"/subscriptions/{SUB}/providers/Microsoft.Network/publicIPAddresses"
