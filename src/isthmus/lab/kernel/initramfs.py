"""The guests' initramfs: busybox-static and the few modules that mount the root (the host's / over virtio-9p,
read-only, under an overlay with a tmpfs upper layer), then a switch to it. Written as an uncompressed newc
cpio in Python, so nothing but the kernel package and busybox is needed."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What the init needs before the root is mounted: PCI virtio, 9p over virtio, overlayfs; virtio-rng so the
# guest has entropy at once (charon wants it). Everything else the guest modprobes from the shared modules.
ROOT_MODULES = ("virtio_pci", "virtio-rng", "9pnet_virtio", "9p", "overlay")
APPLETS = ("sh", "mount", "mkdir", "insmod", "switch_root", "cat", "cp", "ln", "echo", "poweroff")
GUEST_INIT = "/etc/isthmus-guest-init"  # stage 2, copied into the overlay's upper layer

# 9p with a large msize: fewer round trips to qemu for the host's binaries and Python.
_INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m || echo "isthmus-init: insmod $m failed"; done
fail() { echo "isthmus-init: $*"; poweroff -f; }
o=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $o,ro,cache=loose hostroot /lower || fail "cannot mount the host's root (9p hostroot)"
mount -t tmpfs -o mode=755 upper /upper && mkdir /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work root /root || fail "no overlay"
release=$(cat /proc/sys/kernel/osrelease)
mkdir -p /root/lib/modules/$release /root/mnt/share
mount -t 9p -o $o,ro modules /root/lib/modules/$release || fail "cannot mount the modules (9p modules)"
mount -t 9p -o $o share /root/mnt/share || fail "cannot mount the share folder (9p share)"
mount -t tmpfs -o mode=1777 tmpfs /root/tmp; mount -t tmpfs -o mode=755 tmpfs /root/run
for d in proc sys dev; do mount --move /$d /root/$d; done
mkdir -p /root/dev/pts /root/dev/shm; mount -t devpts devpts /root/dev/pts; mount -t tmpfs tmpfs /root/dev/shm
ln -sf /proc/self/fd /root/dev/fd
cp /guest-init /root@GUEST_INIT@
exec switch_root /root /bin/bash @GUEST_INIT@
""".replace("@GUEST_INIT@", GUEST_INIT)

# Stage 2 runs on the host's filesystem, as bash builtins where it can: every process a TCG guest starts costs
# ~0.2 s. The guest's script is /mnt/share/guest.sh (guest.py writes it), sourced in a subshell; its output
# and exit code go to the share folder, since qemu exits 0 whatever the guest did.
_GUEST_INIT = """#!/bin/bash
read -r up _ < /proc/uptime && echo "$up" > /mnt/share/guest-up
( . /mnt/share/guest.sh ) > /mnt/share/guest.log 2>&1 < /dev/null
echo $? > /mnt/share/exit-code.partial && mv /mnt/share/exit-code.partial /mnt/share/exit-code
sync
/bin/busybox poweroff -f || echo o > /proc/sysrq-trigger
"""


@dataclass(frozen=True)
class Entry:
    path: str  # inside the archive, no leading /
    mode: int
    data: bytes = b""


def module_order(modules_dir: Path, wanted: Iterable[str]) -> list[str]:
    """Paths (relative to `modules_dir`) of `wanted` and their dependencies, each after what it needs."""
    dependencies: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        dependencies[module] = needs.split()
        by_name[Path(module).name.split(".ko")[0].replace("-", "_")] = module
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        for needed in dependencies[module]:
            visit(needed)
        order.append(module)

    for name in wanted:
        key = name.replace("-", "_")
        if key not in by_name:
            raise ValueError(f"module {name} is not in {modules_dir / 'modules.dep'}")
        visit(by_name[key])
    return order


def entries(modules_dir: Path, busybox: Path, modules: Iterable[str] = ROOT_MODULES) -> list[Entry]:
    """The initramfs's files: busybox and its applets, the root modules in load order, init and stage 2."""
    found = [Entry(d, stat.S_IFDIR | 0o755) for d in ("bin", "dev", "proc", "sys", "lower", "upper", "root")]
    found.append(Entry("modules", stat.S_IFDIR | 0o755))
    found.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    found += [Entry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox") for applet in APPLETS]
    names = []
    for module in module_order(modules_dir, modules):
        if not module.endswith(".ko"):
            raise ValueError(f"{module}: busybox insmod loads uncompressed modules only")
        names.append(Path(module).name)
        found.append(Entry(f"modules/{names[-1]}", stat.S_IFREG | 0o644, (modules_dir / module).read_bytes()))
    found.append(Entry("modules.order", stat.S_IFREG | 0o644, "".join(f"{n}\n" for n in names).encode()))
    found.append(Entry("init", stat.S_IFREG | 0o755, _INIT.encode()))
    found.append(Entry("guest-init", stat.S_IFREG | 0o755, _GUEST_INIT.encode()))
    return found


def cpio(files: Iterable[Entry]) -> bytes:
    """An uncompressed newc archive (what the kernel unpacks as an initramfs); fixed times, so reproducible."""
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for inode, entry in enumerate([*files, Entry("TRAILER!!!", 0)], start=1):
        name = entry.path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        fields = (inode, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, 0, 0, len(name), 0)
        out.write(b"070701" + b"".join(b"%08X" % field for field in fields) + name)
        pad()
        out.write(entry.data)
        pad()
    return out.getvalue()
