"""Boot a guest: qemu-system-x86_64 with software emulation (TCG) and one vCPU, Debian's stock kernel, the
host's / over virtio-9p read-only under an overlay (a tmpfs upper layer: writes vanish with the guest), the
kernel's modules and a per-guest share folder over 9p. The guest runs one bash script, /mnt/share/guest.sh,
whose output and exit code land in the share folder (qemu itself exits 0 whatever the guest did); then it
powers off. Taps are opened here and handed to qemu as file descriptors, so each can sit in a bridge in any
namespace, and disappears with qemu.

    guest = boot_guest("g1", workdir, script="ip -br link", taps=[Tap("g1-eth0", "br0", "isl-ul")])
    result = guest.wait(timeout=60)      # GuestResult(exit_code, output, boot_seconds), or GuestError
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from isthmus.lab.kernel.image import BOOTSTRAP_STEP, KernelImage, KernelMissing, find
from isthmus.linux.process import Process
from isthmus.linux.run import run

QEMU = "qemu-system-x86_64"
GUEST_SHARE = "/mnt/share"  # the share folder inside the guest
PID_FILE = "qemu.pid"
CONSOLE = "console.log"
_OUTPUTS = ("guest-up", "guest.log", "exit-code")  # what the initramfs's stage 2 writes into the share

# Under TCG charon's af-alg plugin probes every kernel cipher (~12 s) and swanctl loads every plugin (~10 s
# for the first call): af-alg off, and swanctl only what parsing credentials needs (of the plugins the
# bootstrap's strongSwan packages ship: no openssl plugin). A charon with its own strongswan.conf includes
# this text too.
SWANCTL_PLUGINS = "pem pkcs1 pkcs8 x509 pubkey random nonce sha1 sha2 hmac aes gmp curve25519"
TCG_STRONGSWAN_CONF = f"""charon {{
  plugins {{
    af-alg {{
      load = no
    }}
  }}
}}
swanctl {{
  load = {SWANCTL_PLUGINS}
}}
"""

# PCI interrupts routed without ACPI: interpreting the ACPI link objects costs ~0.3 s per device under TCG.
BOOT_OPTIONS = "pci=noacpi"

_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


class GuestError(Exception):
    """A guest did not do what was asked in time; the message ends with the last lines of its console."""


@dataclass(frozen=True)
class Tap:
    """A NIC of the guest: the host side is tap `ifname` (at most 15 characters) in `bridge` of `netns`
    (None: the host's own namespace). Inside the guest the NICs are eth0, eth1, … in the order given."""

    ifname: str
    bridge: str
    netns: str | None = None
    mac: str | None = None  # default: derived from the tap's name
    mtu: int | None = None  # default: the kernel's (1500)


@dataclass(frozen=True)
class GuestResult:
    exit_code: int
    output: str  # what guest.sh printed (stdout and stderr)
    boot_seconds: float  # qemu started → guest.sh started (host wall clock)


def _mac(ifname: str) -> str:
    digest = hashlib.sha256(ifname.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _open_tap(tap: Tap) -> int:
    """A tap created in this namespace by opening it, moved to `tap.netns`, plugged into its bridge."""
    if len(tap.ifname) > 15:
        raise ValueError(f"tap name {tap.ifname!r} is longer than 15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", tap.ifname.encode(), _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR))
        if tap.netns is not None:
            run(["ip", "link", "set", tap.ifname, "netns", tap.netns])
        netns = ("-n", tap.netns) if tap.netns else ()
        mtu = ("mtu", str(tap.mtu)) if tap.mtu else ()
        run(["ip", *netns, "link", "set", tap.ifname, *mtu, "master", tap.bridge, "up"])
    except BaseException:
        os.close(fd)  # the tap goes with its last descriptor
        raise
    return fd


def _preamble(name: str, env: Mapping[str, str], taps: int) -> str:
    lines = [
        "#!/bin/bash",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root",
        *(f"export {key}={shlex.quote(value)}" for key, value in env.items()),
        f"hostname {shlex.quote(name)}",
        f"cd {GUEST_SHARE}",
        # The overlay's /etc is the guest's own: strongSwan's defaults are changed for TCG there.
        "if [ -d /etc/strongswan.d ]; then",
        f"  printf %s {shlex.quote(TCG_STRONGSWAN_CONF)} > /etc/strongswan.d/zz-isthmus-tcg.conf",
        "  printf 'af-alg {\\n  load = no\\n}\\n' > /etc/strongswan.d/charon/af-alg.conf",
        "fi",
        "ip link set lo up",
    ]
    if taps:
        lines.append("modprobe virtio_net")
    return "\n".join(lines) + "\n"


def qemu_command(
    name: str, workdir: Path, image: KernelImage, memory: int, tap_fds: Sequence[tuple[int, str]]
) -> list[str]:
    share = workdir / "share"
    nine_p = "security_model=none"
    command = [
        QEMU,
        "-name", f"isthmus-guest-{name}",
        "-accel", "tcg", "-smp", "1", "-m", str(memory),
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{workdir / CONSOLE}",
        "-kernel", str(image.vmlinux), "-initrd", str(image.initrd),
        "-append", f"console=ttyS0 panic=-1 quiet {BOOT_OPTIONS}",
        "-device", "virtio-rng-pci",
        "-fsdev", f"local,id=hostroot,path=/,{nine_p},readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=modules,path={image.modules},{nine_p},readonly=on",
        "-device", "virtio-9p-pci,fsdev=modules,mount_tag=modules",
        "-fsdev", f"local,id=share,path={share},{nine_p}",
        "-device", "virtio-9p-pci,fsdev=share,mount_tag=share",
    ]  # fmt: skip
    for index, (fd, mac) in enumerate(tap_fds):
        command += ["-netdev", f"tap,id=n{index},fd={fd},vhost=off"]
        command += ["-device", f"virtio-net-pci,netdev=n{index},mac={mac},romfile="]
    return command


class Guest:
    def __init__(self, name: str, workdir: Path, process: Process, started: float) -> None:
        self.name = name
        self.workdir = workdir
        self.share = workdir / "share"
        self.pid = process.pid
        self._process = process
        self.started = started  # time.monotonic() when qemu was started
        self._started_wall = time.time() - (time.monotonic() - started)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def alive(self) -> bool:
        return self._process.alive()

    def console_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / CONSOLE).read_text(errors="replace")
        except OSError:
            text = ""
        with contextlib.suppress(OSError):
            text += (self.workdir / "qemu.log").read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def _fail(self, what: str) -> GuestError:
        self.stop()
        return GuestError(f"guest {self.name} {what}; its console ends:\n{self.console_tail()}")

    def wait_for_file(self, relative: str, timeout: float) -> Path:
        """share/`relative` once the guest has written it; GuestError (the guest stopped) after `timeout`
        seconds or if the guest powers off first."""
        path = self.share / relative
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self.alive():
                if path.exists():
                    break
                raise self._fail(f"powered off before writing {relative}")
            if time.monotonic() > deadline:
                raise self._fail(f"did not write {relative} within {timeout:.0f} s")
            time.sleep(0.05)
        return path

    def wait_up(self, timeout: float = 60.0) -> float:
        """Seconds from qemu's start until guest.sh started."""
        self.wait_for_file("guest-up", timeout)
        return time.monotonic() - self.started

    def wait(self, timeout: float = 120.0) -> GuestResult:
        """guest.sh's exit code and output, once it has finished and the guest powered off (bounded)."""
        deadline = time.monotonic() + timeout
        code = self.wait_for_file("exit-code", timeout)
        boot = (self.share / "guest-up").stat().st_mtime - self._started_wall
        if not self._process.wait(max(deadline - time.monotonic(), 5.0)):
            raise self._fail("finished its script but did not power off")
        self._process.close()
        self._forget()
        return GuestResult(int(code.read_text().strip()), (self.share / "guest.log").read_text(errors="replace"), boot)

    def stop(self, timeout: float = 5.0) -> None:
        """End qemu (the guest gets no shutdown: its state is a tmpfs) and forget its PID."""
        if self._process.alive():
            self._process.signal(signal.SIGTERM)
            if not self._process.wait(timeout):
                self._process.signal(signal.SIGKILL)
                self._process.wait(timeout)
        self._process.close()
        self._forget()

    def _forget(self) -> None:
        (self.workdir / PID_FILE).unlink(missing_ok=True)


def recorded(workdir: Path) -> Process | None:
    """The qemu recorded in `workdir`, if that PID is still a qemu of this workdir."""
    try:
        pid = int((workdir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    process = Process.open(pid)
    if process is None:
        return None
    command = process.cmdline()
    deadline = time.monotonic() + 1.0
    while command == () and time.monotonic() < deadline:  # a process just exec'd may not show its argv yet
        time.sleep(0.01)
        command = process.cmdline()
    if not command or Path(command[0]).name != QEMU or f"file:{workdir / CONSOLE}" not in command:
        process.close()
        return None
    return process


def stop_recorded(workdir: Path, timeout: float = 5.0) -> bool:
    """Stop the qemu recorded in `workdir` (by its PID, checked to be that qemu); True if one was running."""
    process = recorded(workdir)
    (workdir / PID_FILE).unlink(missing_ok=True)
    if process is None:
        return False
    process.signal(signal.SIGTERM)
    if not process.wait(timeout):
        process.signal(signal.SIGKILL)
        process.wait(timeout)
    process.close()
    return True


def compile_bytecode() -> None:
    """Bytecode for isthmus's own modules next to them (the checkout's __pycache__, which git ignores), those
    missing or stale only: a guest runs the host's Python on the host's files, pip compiled the installed
    packages, but nothing writes isthmus's when PYTHONDONTWRITEBYTECODE is set, and a guest would compile
    every module it imports at each start (~0.4 s of an agent's start under TCG; its writes vanish with it)."""
    import compileall

    import isthmus

    compileall.compile_dir(Path(isthmus.__file__).parent, quiet=2)


def boot_guest(
    name: str,
    workdir: Path,
    *,
    command: Sequence[str] | None = None,
    script: str | None = None,
    taps: Sequence[Tap] = (),
    memory: int = 512,
    env: Mapping[str, str] | None = None,
    image: KernelImage | None = None,
) -> Guest:
    """Start guest `name` running `command` (argv) or `script` (bash text); returns at once, the guest boots
    in the background. Files already in `workdir`/share are the guest's to read."""
    if (command is None) == (script is None):
        raise ValueError("give exactly one of command and script")
    if shutil.which(QEMU) is None:
        raise KernelMissing(f"{QEMU} is not installed: run {BOOTSTRAP_STEP}")
    image = image or find()
    workdir = workdir.resolve()
    share = workdir / "share"
    share.mkdir(parents=True, exist_ok=True)
    if (running := recorded(workdir)) is not None:
        running.close()
        raise GuestError(f"guest {name} already runs in {workdir} (qemu pid in {workdir / PID_FILE})")
    for stale in (*_OUTPUTS, "exit-code.partial"):
        (share / stale).unlink(missing_ok=True)
    (workdir / CONSOLE).unlink(missing_ok=True)
    body = shlex.join(command) if command is not None else script
    compile_bytecode()
    (share / "guest.sh").write_text(_preamble(name, env or {}, len(taps)) + f"{body}\n")
    fds: list[int] = []
    try:
        for tap in taps:
            fds.append(_open_tap(tap))
        tap_fds = [(fd, tap.mac or _mac(tap.ifname)) for fd, tap in zip(fds, taps, strict=True)]
        with (workdir / "qemu.log").open("wb") as log:
            started = time.monotonic()
            popen = subprocess.Popen(
                qemu_command(name, workdir, image, memory, tap_fds),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,
            )
    finally:
        for fd in fds:
            os.close(fd)  # qemu holds its own copies
    (workdir / PID_FILE).write_text(f"{popen.pid}\n")
    return Guest(name, workdir, Process.child(popen), started)
