"""A remote site's GRE endpoint for the lab, built on scapy: an implementation independent of the gateway's
datapath it faces (linux/gre_datapath.py shares nothing with it), so a test through it checks the wire.

    site netns: sg0 (TUN, made by this process) ◄──► scapy: IP()/GRE(key, checksum)/inner ◄──► raw sockets

`python -m isthmus.lab.gre_site CONFIG` in the site's namespace; CONFIG (JSON) names the site's address, the
gateway's VIP, the key, the checksum, the tunnel address and the prefixes routed into the tunnel. A packet from
the VIP whose key differs, or whose checksum does not verify when checksums are on, is counted and dropped.
Counters are written to `site-stats.json` beside CONFIG every 0.5 s.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEVICE = "sg0"
STATS = "site-stats.json"
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


@dataclass(frozen=True)
class GreEnd:
    """What a GRE site is configured with (all of it its own: the lab hands it over, nothing is derived)."""

    remote: str  # the gateway's VIP
    key: int | None = None
    checksum: bool = False
    tunnel_address: str | None = None  # the site's inner address with prefix, e.g. 198.19.0.2/30
    routes: tuple[str, ...] = ()  # prefixes the site routes into the tunnel (the VNet's)


@dataclass
class _Counters:
    sent: int = 0
    received: int = 0
    wrong_key: int = 0
    bad_checksum: int = 0
    errors: list[str] = field(default_factory=list)


def config_text(local: str, end: GreEnd) -> str:
    return json.dumps({"local": local, **asdict(end)}, sort_keys=True)


def _open_tun() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", DEVICE.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _configure(end: GreEnd) -> None:
    overhead = 4 + (4 if end.key is not None else 0) + (4 if end.checksum else 0)
    lines = [f"link set {DEVICE} addrgenmode none", f"link set {DEVICE} mtu {1500 - 20 - overhead} up"]
    if end.tunnel_address:
        lines.append(f"addr add {end.tunnel_address} dev {DEVICE}")
    lines += [f"route replace {prefix} dev {DEVICE}" for prefix in end.routes]
    subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)


def _outbound(fd: int, local: str, end: GreEnd, counters: _Counters) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import GRE
    from scapy.packet import Raw

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    while True:
        inner = os.read(fd, 65536)
        gre = GRE(proto=0x86DD if inner[0] >> 4 == 6 else 0x0800)
        if end.key is not None:
            gre.key_present, gre.key = 1, end.key
        if end.checksum:
            gre.chksum_present = 1
        packet = IP(src=local, dst=end.remote, proto=47, ttl=64) / gre / Raw(inner)
        sock.sendto(bytes(packet), (end.remote, 0))
        counters.sent += 1


def _inbound(fd: int, local: str, end: GreEnd, counters: _Counters) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import GRE

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    sock.bind((local, 0))
    while True:
        data, (source, _port) = sock.recvfrom(65536)
        if source != end.remote:
            continue
        packet = IP(data)
        if GRE not in packet:
            continue
        gre = packet[GRE]
        if (gre.key if gre.key_present else None) != end.key:
            counters.wrong_key += 1
            continue
        if end.checksum:
            if not gre.chksum_present:
                counters.bad_checksum += 1
                continue
            copy = gre.copy()
            copy.chksum = None
            if GRE(bytes(copy)).chksum != gre.chksum:
                counters.bad_checksum += 1
                continue
        os.write(fd, bytes(gre.payload))
        counters.received += 1


def _guarded(target: Any, *args: Any) -> None:
    try:
        target(*args)
    except BaseException as error:
        print(f"gre site: {error!r}", file=sys.stderr, flush=True)
        os._exit(1)


def main() -> None:
    config_path = Path(sys.argv[1])
    config = json.loads(config_path.read_text())
    local = config.pop("local")
    end = GreEnd(**{**config, "routes": tuple(config.get("routes", ()))})
    fd = _open_tun()
    _configure(end)
    counters = _Counters()
    for target in (_outbound, _inbound):
        threading.Thread(target=_guarded, args=(target, fd, local, end, counters), daemon=True).start()
    stats = config_path.parent / STATS
    while True:
        partial = stats.with_suffix(".partial")
        partial.write_text(json.dumps({k: v for k, v in asdict(counters).items() if k != "errors"}))
        partial.replace(stats)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
