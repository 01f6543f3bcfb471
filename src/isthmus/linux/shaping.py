"""Throughput tiers in a gateway compartment: every connection held to its tier, both ways, whatever its type.

A compartment is a router between the VNet (its VXLAN device x<vni>) and its connections (tunnels, links), so
both directions of every connection cross x<vni>, as inner packets:

    from the sites:  x<vni> egress ── HTB, a class per connection (its rate), chosen by source ∈ its prefixes
    to the sites:    x<vni> ingress ── redirected to b<vni> (IFB) ── HTB, chosen by destination ∈ its prefixes

Unclassified traffic (ARP, the compartment's own) is not shaped (HTB's direct queue). A change of rates only
is applied in place (`tc class change`: nothing is reset, no connection notices); any other change rebuilds the
trees. Tiers are what a connection is sold at, so they count inner bytes: the tunnels' overhead is the
gateway's, not the tenant's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from isthmus.linux.run import LinuxError, ip_batch, ip_json, run

FIRST_MINOR = 16
_CLASS_STATS = re.compile(r"class htb (\S+) .*?\n\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+)")
QUEUE_S = 0.05  # each class's FIFO holds 50 ms at its rate: TCP sees delay before loss, and no more delay


@dataclass(frozen=True, order=True)
class Limit:
    connection: str  # its id (what the counters are reported for)
    kbps: int
    prefixes: tuple[str, ...]  # the site's (IPv4)


def ifb_name(vni: int) -> str:
    return f"b{vni}"


def burst_bytes(kbps: int) -> int:
    """HTB's bucket: 5 ms at the rate, at least a few full-size packets (accurate from 10 to 500+ Mbit/s)."""
    return max(kbps * 1000 // 8 // 200, 4 * 1514)


def queue_bytes(kbps: int) -> int:
    return max(int(kbps * 1000 / 8 * QUEUE_S), 16 * 1514)


def _tree(device: str, limits: Sequence[Limit], field: str) -> list[str]:
    # The tier counts IP packets, as a tenant counts Mbit/s: the stab takes the Ethernet header back out.
    lines = [f"qdisc replace dev {device} root handle 1: stab overhead -14 linklayer ethernet htb default 0 r2q 1000"]
    for index, limit in enumerate(limits):
        minor = FIRST_MINOR + index
        burst = burst_bytes(limit.kbps)
        lines += [
            f"class add dev {device} parent 1: classid 1:{minor:x} htb rate {limit.kbps}kbit ceil {limit.kbps}kbit "
            f"burst {burst} cburst {burst}",
            f"qdisc add dev {device} parent 1:{minor:x} handle {minor:x}: bfifo limit {queue_bytes(limit.kbps)}",
        ]
        lines += [f"filter add dev {device} parent 1: protocol ip prio 1 u32 match ip {field} {prefix} flowid "
                  f"1:{minor:x}" for prefix in limit.prefixes]  # fmt: skip
    return lines


def _rates(device: str, limits: Sequence[Limit]) -> list[str]:
    out = []
    for index, limit in enumerate(limits):
        burst = burst_bytes(limit.kbps)
        minor = FIRST_MINOR + index
        out.append(f"class change dev {device} parent 1: classid 1:{minor:x} htb rate {limit.kbps}kbit "
                   f"ceil {limit.kbps}kbit burst {burst} cburst {burst}")  # fmt: skip
        out.append(
            f"qdisc change dev {device} parent 1:{minor:x} handle {minor:x}: bfifo limit {queue_bytes(limit.kbps)}"
        )
    return out


def tc_batch(netns: str, lines: Sequence[str]) -> None:
    if lines:
        run(["tc", "-n", netns, "-batch", "-"], stdin="\n".join(lines) + "\n")


def ensure_shaping(netns: str, vni: int, limits: Sequence[Limit], applied: Sequence[Limit] | None) -> int:
    """Shape compartment `netns` (VNI `vni`) to `limits`; `applied` is what the caller last applied (None: not
    known, rebuild). The tc commands it took."""
    vxlan, ifb = f"x{vni}", ifb_name(vni)
    wanted = sorted(limits, key=lambda limit: limit.connection)
    if applied is not None and sorted(applied, key=lambda limit: limit.connection) == wanted:
        return 0
    same_shape = applied is not None and [(a.connection, a.prefixes) for a in sorted(applied)] == [
        (w.connection, w.prefixes) for w in sorted(wanted)
    ]
    if same_shape:
        lines = _rates(vxlan, wanted) + _rates(ifb, wanted)
        tc_batch(netns, lines)
        return len(lines)
    if not wanted:
        lines = [f"qdisc del dev {vxlan} root", f"qdisc del dev {vxlan} ingress"]
        for line in lines:  # either may be missing already
            with contextlib.suppress(LinuxError):
                tc_batch(netns, [line])
        if any(link["ifname"] == ifb for link in ip_json(netns, "link", "show")):
            ip_batch(netns, [f"link del {ifb}"])
        return len(lines)
    if not any(link["ifname"] == ifb for link in ip_json(netns, "link", "show")):
        ip_batch(netns, [f"link add {ifb} type ifb", f"link set {ifb} up"])
    lines = [
        *_tree(vxlan, wanted, "src"),
        *_tree(ifb, wanted, "dst"),
        f"qdisc replace dev {vxlan} handle ffff: ingress",
        f"filter replace dev {vxlan} parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 "
        f"action mirred egress redirect dev {ifb}",
    ]
    tc_batch(netns, lines)
    return len(lines)


def in_place(netns: str, vni: int) -> bool:
    """The VNet device still has the tiers' tree (a device made anew has none)."""
    return "qdisc htb 1: root" in run(["tc", "-n", netns, "qdisc", "show", "dev", f"x{vni}"], check=False)


@dataclass(frozen=True)
class Shaped:
    """One connection's shaping, one direction: what passed and what its tier dropped."""

    bytes: int
    packets: int
    dropped: int


def counters(netns: str, vni: int, limits: Sequence[Limit]) -> dict[str, dict[str, Shaped]]:
    """Per connection id, {"fromSite": …, "toSite": …} as the classes of `limits` (as applied) count them."""
    wanted = sorted(limits, key=lambda limit: limit.connection)
    out: dict[str, dict[str, Shaped]] = {limit.connection: {} for limit in wanted}
    for device, direction in ((f"x{vni}", "fromSite"), (ifb_name(vni), "toSite")):
        text = run(["tc", "-n", netns, "-s", "class", "show", "dev", device])  # (tc 6.1 has no JSON for classes)
        classes = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in _CLASS_STATS.finditer(text)}
        for index, limit in enumerate(wanted):
            sent, packets, dropped = classes.get(f"1:{FIRST_MINOR + index:x}", (0, 0, 0))
            out[limit.connection][direction] = Shaped(sent, packets, dropped)
    return out
