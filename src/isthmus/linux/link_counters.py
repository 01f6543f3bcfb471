"""The kernel's counters of a namespace's devices: what a GRE or L3 connection reports as its bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from isthmus.linux.run import ip_json


@dataclass(frozen=True)
class DeviceCounters:
    up: bool  # administratively up and with carrier (a TUN has carrier while its datapath holds it)
    received_bytes: int  # from the far side (inner packets, for a tunnel)
    sent_bytes: int  # to the far side
    received_packets: int
    sent_packets: int
    dropped: int


def counters(netns: str, prefixes: Sequence[str]) -> dict[str, DeviceCounters]:
    """Per device of `netns` whose name starts with one of `prefixes`, its state and counters."""
    out = {}
    for link in ip_json(netns, "-s", "link", "show"):
        name = link["ifname"]
        if not name.startswith(tuple(prefixes)):
            continue
        stats = link.get("stats64", {})
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        flags = link.get("flags", ())
        out[name] = DeviceCounters(
            up="UP" in flags and "LOWER_UP" in flags,
            received_bytes=rx.get("bytes", 0),
            sent_bytes=tx.get("bytes", 0),
            received_packets=rx.get("packets", 0),
            sent_packets=tx.get("packets", 0),
            dropped=rx.get("dropped", 0) + tx.get("dropped", 0),
        )
    return out
