"""A whole lab (controller, ToR, MUX and host agents in namespaces) per test module, always removed."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.lab import fabric
from isthmus.lab.topology import Topology
from tests.support import require_root

require_root()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[fabric.LabState]:
    """The lab; a module may choose the MUX agents' speaker by parametrising this fixture indirectly (bird, gobgp),
    else they run the default."""
    yield from _lab(tmp_path_factory, request, gateways=0)


@pytest.fixture(scope="module")
def gateway_lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[fabric.LabState]:
    """The lab with a 1+1 gateway pool (gw1, gw2) and their gateway agents."""
    yield from _lab(tmp_path_factory, request, gateways=2)


def _lab(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, gateways: int
) -> Iterator[fabric.LabState]:
    workdir = tmp_path_factory.mktemp("lab")
    speaker = getattr(request, "param", None)
    # Unique per run, module and speaker, short (interface names derive from node names, not from this).
    prefix = f"it{os.getpid() % 10000}x{zlib.crc32(request.module.__name__.encode()) % 100:02d}{(speaker or '')[:1]}-"
    chosen = os.environ.get("ISTHMUS_MUX_SPEAKER")
    if speaker:
        os.environ["ISTHMUS_MUX_SPEAKER"] = speaker  # every MUX agent this module starts (or restarts) inherits it
    try:
        state = fabric.up(workdir, Topology(prefix, hosts=2, muxes=1, gateways=gateways), log_level="info")
        try:
            yield state
        finally:
            fabric.down(Path(workdir), prefix)
            leftovers = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
            assert not leftovers, leftovers
    finally:
        if chosen is None:
            os.environ.pop("ISTHMUS_MUX_SPEAKER", None)
        else:
            os.environ["ISTHMUS_MUX_SPEAKER"] = chosen
