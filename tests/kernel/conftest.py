"""The real-kernel tier's tests: qemu guests on Debian's stock kernel (at most two at once)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from isthmus.lab.kernel import image
from isthmus.lab.kernel.guest import QEMU
from isthmus.linux.run import add_netns, delete_netns, ip_batch
from tests.support import require_root

require_root()


def missing(reason: str) -> None:
    """Without qemu or the kernel a developer's run skips; CI bootstraps both, so there it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs scripts/bootstrap, which provides it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kernel() -> image.KernelImage:
    if shutil.which(QEMU) is None:
        missing(f"{QEMU} is not installed: run {image.BOOTSTRAP_STEP}")
    try:
        return image.find()
    except image.KernelMissing as error:
        missing(str(error))
        raise


@pytest.fixture(scope="module")
def bridge_netns(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace holding bridge br0 with 198.18.0.1/24, for guests' taps; removed afterwards."""
    name = f"ik{os.getpid() % 100000}-{request.module.__name__.rsplit('.', 1)[-1][5:17]}"
    add_netns(name)
    try:
        ip_batch(name, ["link add br0 type bridge", "addr add 198.18.0.1/24 dev br0", "link set br0 up"])
        yield name
    finally:
        delete_netns(name)
