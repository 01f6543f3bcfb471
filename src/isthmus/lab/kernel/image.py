"""Where the kernel tier's files live: var/kernel/<version>/ holds the unpacked package (package/), the
uncompressed kernel qemu boots (vmlinux) and the initramfs (initrd.cpio); var/kernel/current names the
version scripts/bootstrap prepared last."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP_STEP = "scripts/bootstrap (its real-kernel step: qemu-system-x86, busybox-static, the kernel package)"


class KernelMissing(Exception):
    """Something the kernel tier needs is not there; the message names it and the step that provides it."""


def default_root() -> Path:
    """$ISTHMUS_KERNEL_DIR, else the checkout's var/kernel (this file is src/isthmus/lab/kernel/image.py)."""
    if given := os.environ.get("ISTHMUS_KERNEL_DIR"):
        return Path(given)
    checkout = Path(__file__).resolve().parents[4]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "var" / "kernel"
    return Path("var/kernel").resolve()


@dataclass(frozen=True)
class KernelImage:
    root: Path  # var/kernel
    version: str  # e.g. 6.1.0-57-amd64

    @property
    def directory(self) -> Path:
        return self.root / self.version

    @property
    def package(self) -> Path:
        """The kernel package as dpkg-deb -x unpacked it."""
        return self.directory / "package"

    @property
    def vmlinuz(self) -> Path:
        return self.package / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.package / "lib" / "modules" / self.version

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.cpio"


def find(root: Path | None = None) -> KernelImage:
    """The prepared kernel, or KernelMissing naming what is absent."""
    root = root or default_root()
    current = root / "current"
    try:
        version = current.read_text().strip()
    except OSError:
        raise KernelMissing(f"no prepared kernel in {root} ({current} is missing): run {BOOTSTRAP_STEP}") from None
    image = KernelImage(root, version)
    for path in (image.vmlinux, image.initrd, image.modules / "modules.dep"):
        if not path.is_file():
            raise KernelMissing(f"the kernel tier's {path} is missing: run {BOOTSTRAP_STEP}")
    return image
