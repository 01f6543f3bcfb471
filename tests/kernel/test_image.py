"""Building what a guest boots, on a made-up kernel package: the vmlinux out of a bzImage, the modules in
dependency order, an initramfs the kernel (here busybox cpio) can unpack, nothing rebuilt when up to date."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from isthmus.lab.kernel import initramfs, prepare
from isthmus.lab.kernel.image import KernelImage, KernelMissing, find
from tests.kernel.conftest import missing

VERSION = "6.1.0-0-test"
ELF = b"\x7fELF" + b"kernel" * 1000


def fake_package(root: Path) -> KernelImage:
    image = KernelImage(root, VERSION)
    image.vmlinuz.parent.mkdir(parents=True)
    image.vmlinuz.write_bytes(b"MZ setup code" + lzma.compress(ELF, format=lzma.FORMAT_XZ) + b"trailing data")
    dep = []
    for path, needs in {
        "kernel/drivers/virtio/virtio.ko": "",
        "kernel/drivers/virtio/virtio_ring.ko": "",
        "kernel/drivers/virtio/virtio_pci.ko": "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/char/hw_random/virtio-rng.ko": "kernel/drivers/virtio/virtio.ko",
        "kernel/net/9p/9pnet.ko": "",
        "kernel/net/9p/9pnet_virtio.ko": "kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko",
        "kernel/fs/9p/9p.ko": "kernel/net/9p/9pnet.ko",
        "kernel/fs/overlayfs/overlay.ko": "",
    }.items():
        (image.modules / path).parent.mkdir(parents=True, exist_ok=True)
        (image.modules / path).write_bytes(f"module {path}".encode())
        dep.append(f"{path}: {needs}".rstrip())
    (image.modules / "modules.dep").write_text("\n".join(dep) + "\n")
    return image


def test_modules_come_after_what_they_need(tmp_path: Path) -> None:
    image = fake_package(tmp_path)
    order = [Path(m).name for m in initramfs.module_order(image.modules, ["virtio_pci", "9p", "9pnet_virtio"])]
    assert order == ["virtio_ring.ko", "virtio.ko", "virtio_pci.ko", "9pnet.ko", "9p.ko", "9pnet_virtio.ko"]
    with pytest.raises(ValueError, match="module nosuch is not in"):
        initramfs.module_order(image.modules, ["nosuch"])


def test_the_vmlinux_is_the_elf_inside_the_bzimage(tmp_path: Path) -> None:
    assert prepare.extract_vmlinux(fake_package(tmp_path).vmlinuz.read_bytes()) == ELF
    with pytest.raises(ValueError, match="no xz payload"):
        prepare.extract_vmlinux(b"MZ nothing compressed")


def test_the_initramfs_unpacks_with_init_modules_and_busybox(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        missing("busybox is not installed (scripts/bootstrap installs busybox-static)")
    image = fake_package(tmp_path / "kernel")
    archive = initramfs.cpio(initramfs.entries(image.modules, Path(busybox)))
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run([busybox, "cpio", "-i", "-d"], input=archive, cwd=out, check=True, capture_output=True)
    assert (out / "init").read_text().startswith("#!/bin/sh")
    assert (out / "init").stat().st_mode & 0o111
    assert (out / "bin" / "sh").is_symlink() and (out / "bin" / "sh").readlink() == Path("busybox")
    assert (out / "bin" / "busybox").read_bytes() == Path(busybox).read_bytes()
    loaded = (out / "modules.order").read_text().split()
    assert loaded[-1] == "overlay.ko" and loaded.index("9pnet.ko") < loaded.index("9p.ko")
    assert all((out / "modules" / name).is_file() for name in loaded)


def test_prepare_builds_once_and_skips_what_is_up_to_date(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        missing("busybox is not installed (scripts/bootstrap installs busybox-static)")
    image = fake_package(tmp_path)
    with pytest.raises(KernelMissing, match="no prepared kernel"):
        find(tmp_path)
    _, built = prepare.prepare(tmp_path, VERSION, Path(busybox))
    assert built == [str(image.vmlinux), str(image.initrd)]
    assert image.vmlinux.read_bytes() == ELF
    assert find(tmp_path) == image
    assert prepare.prepare(tmp_path, VERSION, Path(busybox))[1] == []
    image.vmlinuz.write_bytes(image.vmlinuz.read_bytes() + b"changed")  # a new package: the vmlinux again
    assert prepare.prepare(tmp_path, VERSION, Path(busybox))[1] == [str(image.vmlinux)]


def test_prepare_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(KernelMissing, match=r"modules.dep is missing .*scripts/bootstrap"):
        prepare.prepare(tmp_path, VERSION)
    fake_package(tmp_path)
    with pytest.raises(KernelMissing, match="busybox is not installed"):
        prepare.prepare(tmp_path, VERSION, tmp_path / "no-busybox")
