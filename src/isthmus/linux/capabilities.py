"""What the running kernel offers the data plane, found by trying: each feature is created once in a throwaway
network namespace (removed even when a trial fails), so the answer is what this kernel really does, not what
its config claims. Where the kernel has loadable modules they are loaded first (one modprobe); where it has
none that step is skipped. Takes some tens of milliseconds.

    python -m isthmus.linux.capabilities      # the probe's result as one JSON object
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from isthmus.linux.run import add_netns, delete_netns, in_netns

# The modules behind the features, for kernels that build them as modules (Debian's): loaded in one go, since
# the kernel's own on-demand loading costs a modprobe per feature.
MODULES = ("esp4", "xfrm_user", "ip_gre", "8021q", "vrf", "sch_netem", "vxlan", "veth", "dummy", "nf_tables")

_KEY16 = "0x" + "11" * 16
_KEY32 = "0x" + "22" * 32
_NFT_FLOWTABLE = "table inet probe { flowtable f { hook ingress priority 0; devices = { lo }; } }\n"


@dataclass(frozen=True)
class Capabilities:
    kernel: str  # the release, uname -r
    esp: bool  # kernel XFRM with the ESP transform (IPsec SAs in the kernel)
    gre: bool  # keyed GRE tunnels (ip_gre)
    vlan: bool  # 802.1Q sub-interfaces
    vrf: bool
    netem: bool  # tc's network emulator: delay, loss, reordering, duplication
    vxlan: bool
    nft: bool  # nftables: nft runs and the kernel takes an inet table
    nft_flowtable: bool  # nftables flowtables (the software fast path)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Capabilities:
        return cls(**{f.name: value[f.name] for f in fields(cls)})


def _ok(args: Sequence[str], stdin: str | None = None) -> bool:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False, timeout=10)
    return done.returncode == 0


def load_modules() -> None:
    """modprobe the features' modules if this kernel has a modules directory (harmless where it has none)."""
    if Path(f"/lib/modules/{platform.release()}/modules.dep").is_file() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "-q", "-a", *MODULES], capture_output=True, check=False, timeout=30)


def _trials(netns: str) -> dict[str, bool]:
    ip = ["ip", "-n", netns]
    esp = [*ip, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x100"]
    esp += ["mode", "tunnel", "enc", "cbc(aes)", _KEY16, "auth", "hmac(sha256)", _KEY32]
    parent = "p0"
    has_parent = _ok([*ip, "link", "add", parent, "type", "veth", "peer", "name", "p1"]) or _ok(
        [*ip, "link", "add", parent, "type", "dummy"]
    )
    nft = shutil.which("nft") is not None
    return {
        "esp": _ok(esp),
        "gre": _ok([*ip, "link", "add", "g0", "type", "gre", "local", "192.0.2.1", "remote", "192.0.2.2", "key", "5"]),
        "vlan": has_parent and _ok([*ip, "link", "add", "link", parent, "name", "p0.10", "type", "vlan", "id", "10"]),
        "vrf": _ok([*ip, "link", "add", "vrf0", "type", "vrf", "table", "10"]),
        "netem": _ok(["tc", "-n", netns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]),
        "vxlan": _ok([*ip, "link", "add", "vx0", "type", "vxlan", "id", "5", "dstport", "4789", "local", "192.0.2.1"]),
        "nft": nft and _ok(in_netns(netns, ["nft", "add", "table", "inet", "probe0"])),
        "nft_flowtable": nft and _ok(in_netns(netns, ["nft", "-f", "-"]), stdin=_NFT_FLOWTABLE),
    }


def probe(*, modprobe: bool = True) -> Capabilities:
    """Try each feature in a namespace of its own, then remove the namespace (also when a trial raised)."""
    if modprobe:
        load_modules()
    netns = f"isthmus-caps-{os.getpid()}-{secrets.token_hex(3)}"
    add_netns(netns)
    try:
        found = _trials(netns)
    finally:
        delete_netns(netns)
    return Capabilities(kernel=platform.release(), **found)


def main() -> int:
    print(json.dumps(probe().to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
