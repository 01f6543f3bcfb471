"""What the running kernel offers the data plane, found by trying: each feature is created once in a throwaway
network namespace (removed even when a trial fails), so the answer is what this kernel really does, not what
its config claims. Where the kernel has loadable modules they are loaded first (one modprobe); where it has
none that step is skipped. A handful of processes (~0.1 s on the host; each costs ~0.3 s in a TCG guest).

    python -m isthmus.linux.capabilities      # the probe's result as one JSON object
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from isthmus.linux import libnft
from isthmus.linux.run import NETNS_DIR, add_netns, delete_netns

# The modules behind the features, for kernels that build them as modules (Debian's): loaded in one go, since
# the kernel's own on-demand loading costs a modprobe per feature.
MODULES: tuple[str, ...] = ("esp4", "xfrm_user", "crypto_null", "authenc", "echainiv", "ip_gre", "8021q", "vrf")
MODULES += ("sch_netem", "vxlan", "veth", "dummy", "nf_tables", "nf_flow_table_inet")

# ESP with the null cipher first: instantiating and self-testing AES and HMAC costs ~3 s in a TCG guest (a
# gateway pays that at its first SA anyway); AES-CBC/HMAC-SHA256 only where the null cipher is not built.
_ESP_STATE = ["xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp"]
_ESP_STATES = (
    [*_ESP_STATE, "spi", "0x100", "enc", "ecb(cipher_null)", "", "mode", "tunnel"],
    [*_ESP_STATE, "spi", "0x101", "enc", "cbc(aes)", f"0x{'11' * 16}", "auth", "hmac(sha256)", f"0x{'22' * 32}"],
)
_NFT_FLOWTABLE = "add flowtable inet probe f { hook ingress priority 0; devices = { lo }; }"
_CAPTURE: dict[str, Any] = {"capture_output": True, "text": True, "check": False, "timeout": 30}


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


def _failed_lines(args: Sequence[str], lines: Sequence[str]) -> set[int]:
    """Run `lines` as one `-force -batch` (every line tried, one process: a process costs ~0.3 s in a TCG
    guest); the 1-based numbers of the lines that failed."""
    done = subprocess.run([*args, "-force", "-batch", "-"], input="\n".join(lines) + "\n", **_CAPTURE)
    if done.returncode != 0 and "Command failed" not in done.stderr:
        return set(range(1, len(lines) + 1))  # the tool itself did not run
    return {int(n) for n in re.findall(r"Command failed -:(\d+)", done.stderr)}


def _batch(args: Sequence[str], trials: dict[str, Sequence[str]], decisive: dict[str, int]) -> dict[str, bool]:
    """Each feature's lines in one batch; a feature passes if its decisive line (index into its own lines,
    default all of them) succeeded."""
    lines: list[str] = []
    own: dict[str, list[int]] = {}
    for feature, commands in trials.items():
        numbers = list(range(len(lines) + 1, len(lines) + len(commands) + 1))
        lines += commands
        own[feature] = [numbers[decisive[feature]]] if feature in decisive else numbers
    failed = _failed_lines(args, lines)
    return {feature: not failed.intersection(numbers) for feature, numbers in own.items()}


def live_modules(listing: Path = Path("/proc/modules")) -> set[str]:
    """The modules the kernel has loaded and initialised (Live in /proc/modules; not the built-in ones)."""
    try:
        lines = listing.read_text().splitlines()
    except OSError:
        return set()
    return {words[0] for line in lines if len(words := line.split()) > 4 and words[4] == "Live"}


def load_modules() -> None:
    """modprobe the features' modules if this kernel has a modules directory (harmless where it has none) and
    one of them is not loaded yet: a kernel node's guest script loads them before its agent probes, and a
    modprobe process costs ~0.2 s there."""
    has_modules = Path(f"/lib/modules/{os.uname().release}/modules.dep").is_file() and shutil.which("modprobe")
    if has_modules and not set(MODULES) <= live_modules():
        subprocess.run(["modprobe", "-q", "-a", *MODULES], capture_output=True, check=False, timeout=60)


def _nft(netns: str, script: str) -> bool:
    try:
        libnft.run(f"{NETNS_DIR}/{netns}", script)
    except (libnft.NftError, OSError):
        return False
    return True


def _trials(netns: str) -> dict[str, bool]:
    found = _batch(
        ["ip", "-n", netns],
        {
            "gre": ["link add g0 type gre local 192.0.2.1 remote 192.0.2.2 key 5"],
            # a parent for the VLAN: a veth, else a dummy (only the VLAN's own line decides)
            "vlan": [
                "link add p0 type veth peer name p1",
                "link add p0 type dummy",
                "link add link p0 name p0.10 type vlan id 10",
            ],
            "vrf": ["link add vrf0 type vrf table 10"],
            "vxlan": ["link add vx0 type vxlan id 5 dstport 4789 local 192.0.2.1"],
        },
        decisive={"vlan": 2},
    )
    # ip xfrm exits at its first error, so it cannot share a -force batch
    found["esp"] = any(subprocess.run(["ip", "-n", netns, *state], **_CAPTURE).returncode == 0 for state in _ESP_STATES)
    found |= _batch(["tc", "-n", netns], {"netem": ["qdisc add dev lo root netem delay 1ms"]}, {})
    found["nft"] = _nft(netns, "add table inet probe")
    found["nft_flowtable"] = found["nft"] and _nft(netns, _NFT_FLOWTABLE)
    return found


def probe(*, modprobe: bool = True) -> Capabilities:
    """Try each feature in a namespace of its own, then remove the namespace (also when a trial raised)."""
    if modprobe:
        load_modules()
    netns = f"isthmus-caps-{os.getpid()}-{os.urandom(3).hex()}"
    add_netns(netns)
    try:
        found = _trials(netns)
    finally:
        delete_netns(netns)
    return Capabilities(kernel=os.uname().release, **found)


def main() -> int:
    print(json.dumps(probe().to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
