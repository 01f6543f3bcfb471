"""Build what a guest boots from the unpacked kernel package: the uncompressed vmlinux (qemu boots its ELF
through PVH, skipping the BIOS and the in-kernel xz decompressor) and the initramfs. Skips what is up to date.

    python -m isthmus.lab.kernel.prepare var/kernel 6.1.0-57-amd64      (scripts/bootstrap runs this)
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import sys
import time
from pathlib import Path

from isthmus.lab.kernel import initramfs
from isthmus.lab.kernel.image import BOOTSTRAP_STEP, KernelImage, KernelMissing

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage whose payload is xz-compressed (Debian's)."""
    start = vmlinuz.find(XZ_MAGIC)
    if start < 0:
        raise ValueError("no xz payload in the bzImage")
    # The payload is followed by other data: one stream is decompressed, the rest ignored.
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[start:])
    if not elf.startswith(ELF_MAGIC):
        raise ValueError("the bzImage's xz payload is not an ELF kernel")
    return elf


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _up_to_date(output: Path, stamp: str) -> bool:
    stamp_file = output.with_name(output.name + ".inputs")
    return output.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp


def _record(output: Path, stamp: str) -> None:
    output.with_name(output.name + ".inputs").write_text(stamp)


def _stat_stamp(*paths: Path) -> str:
    return "".join(f"{p} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in paths)


def prepare(root: Path, version: str, busybox: Path | None = None) -> tuple[KernelImage, list[str]]:
    """Build the vmlinux and the initramfs of `version` under `root` where stale; returns the image and what
    was built."""
    image = KernelImage(root, version)
    if not (image.modules / "modules.dep").is_file():
        raise KernelMissing(f"{image.modules}/modules.dep is missing (kernel package not unpacked): {BOOTSTRAP_STEP}")
    found = busybox or (Path(p) if (p := shutil.which("busybox")) else None)
    if found is None or not found.is_file():
        raise KernelMissing(f"busybox is not installed: {BOOTSTRAP_STEP}")
    built = []
    stamp = _stat_stamp(image.vmlinuz)
    if not _up_to_date(image.vmlinux, stamp):
        _write(image.vmlinux, extract_vmlinux(image.vmlinuz.read_bytes()))
        _record(image.vmlinux, stamp)
        built.append(str(image.vmlinux))
    files = initramfs.entries(image.modules, found)
    archive = initramfs.cpio(files)
    stamp = hashlib.sha256(archive).hexdigest()
    if not _up_to_date(image.initrd, stamp):
        _write(image.initrd, archive)
        _record(image.initrd, stamp)
        built.append(str(image.initrd))
    current = root / "current"
    if not current.is_file() or current.read_text().strip() != version:
        _write(current, f"{version}\n".encode())
    return image, built


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m isthmus.lab.kernel.prepare KERNEL_DIR VERSION", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        _, built = prepare(Path(argv[0]), argv[1])
    except (KernelMissing, ValueError, OSError) as error:
        print(f"isthmus: error: {error}", file=sys.stderr)
        return 1
    if built:
        print(f"bootstrap: built {', '.join(built)} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
