"""The userspace GRE datapath of one gateway compartment, for kernels without ip_gre (this machine's).

    compartment netns:  gt<hash> (TUN, made persistent by the agent) ◄──► this process ◄── raw socket, GRE,
                        addresses and routes are the agent's             │   bound to the VIP
                                                                         └─► per tunnel a raw IPPROTO_RAW
                                                                             socket (outer header its own)

Run by the gateway agent as a supervised daemon, one per compartment, in the compartment's namespace:
`python -m isthmus.linux.gre_datapath CONFIG`. The configuration (JSON, written by the agent) names the local
endpoint and each tunnel: its TUN device, the remote endpoint, the key and whether to checksum. One thread per
tunnel encapsulates what the kernel routes into its device; one thread reads the GRE socket and hands each
packet to the tunnel its (source, key) names. A packet no tunnel claims, or not valid GRE, is counted and
dropped. Every 0.5 s the counters are written to `stats.json` beside the configuration; the supervisor's probe
reads its age, so a hung datapath is replaced. The TUN devices are persistent: their addresses and routes
survive a restart of this process, and while it is down their packets are dropped (no carrier).

Standard library only: it starts in a fraction of a second.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.linux import gre_wire

STATS = "stats.json"
STATS_EVERY_S = 0.5
_TUNSETIFF, _TUNGETIFF = 0x400454CA, 0x800454D2
_IFF_TUN, _IFF_NO_PI, _IFF_PERSIST = 0x0001, 0x1000, 0x0800
BUFFER = 65536


@dataclass
class Tunnel:
    device: str
    remote: str
    key: int | None
    checksum: bool
    fd: int = -1
    sent_packets: int = 0
    received_packets: int = 0
    send_errors: int = 0
    delivery_errors: int = 0
    header: bytes = field(default=b"")


@dataclass
class Counters:
    malformed: int = 0
    unclaimed: int = 0


def attach(device: str) -> int:
    """The file descriptor of TUN device `device`, which must exist (the agent makes it persistent): a device
    this made would vanish with the process, and its addresses and routes with it."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", device.encode(), _IFF_TUN | _IFF_NO_PI))
    flags = struct.unpack("16sH22x", fcntl.ioctl(fd, _TUNGETIFF, bytes(40)))[1]
    if not flags & _IFF_PERSIST:
        os.close(fd)
        raise SystemExit(f"gre datapath: device {device} does not exist")
    return fd


def encapsulate(tunnel: Tunnel, local: str) -> None:
    """TUN -> GRE, for ever (until the process ends)."""
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    # IPPROTO_RAW: a socket that only sends (a GRE raw socket would also be handed a copy of every packet the
    # remote sends), writing the outer IPv4 header itself; the kernel fills in its length and checksum.
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    out.connect((tunnel.remote, 0))
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, gre_wire.PROTOCOL, 0,
                        socket.inet_aton(local), socket.inet_aton(tunnel.remote))  # fmt: skip
    target = out.fileno()
    fd = tunnel.fd
    readv, writev = os.readv, os.writev
    plain = outer + tunnel.header  # the whole header of an IPv4 packet without a checksum, in one piece
    buffers = [buffer]
    while True:
        try:
            size = readv(fd, buffers)
        except OSError as error:
            if error.errno in (errno.EINTR, errno.EAGAIN):
                continue
            raise
        payload = view[:size]
        if tunnel.checksum:
            protocol = gre_wire.inner_protocol(payload)
            header = outer + gre_wire.header(protocol, key=tunnel.key, checksum=True, payload=payload)
        elif buffer[0] >> 4 == 6:
            header = outer + gre_wire.header(gre_wire.IPV6, key=tunnel.key, checksum=False)
        else:
            header = plain
        try:
            writev(target, [header, payload])
            tunnel.sent_packets += 1
        except OSError:  # ENOBUFS, an unreachable remote: the packet is lost, as on a wire
            tunnel.send_errors += 1


def decapsulate(sock: socket.socket, tunnels: dict[tuple[bytes, int | None], Tunnel], counters: Counters,
                local: bytes) -> None:  # fmt: skip
    """GRE -> TUN, for ever. The raw socket hands over the whole IPv4 packet, outer header included. The common
    packet (IPv4 inside, a key or none, no checksum) is told by its source and its first GRE bytes alone."""
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    # Keyed by the outer header's source and destination and the GRE header: one slice of an option-less packet.
    fast: dict[bytes, Tunnel] = {}
    for (source, key), each in tunnels.items():
        if not each.checksum:
            fast[source + local + gre_wire.header(gre_wire.IPV4, key=key, checksum=False)] = each
    recv_into, write = sock.recv_into, os.write
    while True:
        size = recv_into(buffer)
        if size < 24:
            counters.malformed += 1
            continue
        start = (buffer[0] & 0x0F) * 4
        tunnel: Tunnel | None = None
        if start == 20:
            offset = 28 if buffer[20] == 0x20 else 24
            if size >= offset:
                tunnel = fast.get(view[12:offset].tobytes())
        if tunnel is None:
            try:
                parsed = gre_wire.parse(view[:size], start)
            except gre_wire.Malformed:
                counters.malformed += 1
                continue
            tunnel = tunnels.get((bytes(buffer[12:16]), parsed.key))
            if tunnel is None or parsed.protocol not in (gre_wire.IPV4, gre_wire.IPV6):
                counters.unclaimed += 1
                continue
            if tunnel.checksum and not buffer[start] & 0x80:
                counters.malformed += 1  # a tunnel with checksums takes no packet without one
                continue
            offset = parsed.offset
        try:
            write(tunnel.fd, view[offset:size])
            tunnel.received_packets += 1
        except OSError:
            tunnel.delivery_errors += 1


def _or_exit(target: Callable[..., None]) -> Callable[..., None]:
    """A thread's body that ends the whole process when it fails: a datapath missing a direction must not
    look healthy (the supervisor restarts it)."""

    def body(*args: object) -> None:
        try:
            target(*args)
        except BaseException as error:
            print(f"gre datapath: {threading.current_thread().name}: {error!r}", file=sys.stderr, flush=True)
            os._exit(1)

    return body


def write_stats(path: Path, tunnels: list[Tunnel], counters: Counters) -> None:
    body = {
        "at": time.time(),
        "malformed": counters.malformed,
        "unclaimed": counters.unclaimed,
        "tunnels": {
            t.device: {
                "sent": t.sent_packets,
                "received": t.received_packets,
                "sendErrors": t.send_errors,
                "deliveryErrors": t.delivery_errors,
            }
            for t in tunnels
        },
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(body))
    partial.replace(path)


def run(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, gre_wire.PROTOCOL)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((config["local"], 0))
    tunnels = [Tunnel(t["device"], t["remote"], t.get("key"), bool(t.get("checksum"))) for t in config["tunnels"]]
    by_source = {}
    for tunnel in tunnels:
        tunnel.fd = attach(tunnel.device)
        tunnel.header = gre_wire.header(gre_wire.IPV4, key=tunnel.key, checksum=False)
        by_source[(socket.inet_aton(tunnel.remote), tunnel.key)] = tunnel
    counters = Counters()
    for tunnel in tunnels:
        threading.Thread(
            target=_or_exit(encapsulate), args=(tunnel, config["local"]), name=tunnel.device, daemon=True
        ).start()
    threading.Thread(
        target=_or_exit(decapsulate),
        args=(sock, by_source, counters, socket.inet_aton(config["local"])),
        name="receive",
        daemon=True,
    ).start()
    stats = config_path.parent / STATS
    while True:
        write_stats(stats, tunnels, counters)
        time.sleep(STATS_EVERY_S)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m isthmus.linux.gre_datapath CONFIG")
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
