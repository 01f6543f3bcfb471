"""Routes, neighbours and FDB entries an agent owns, reconciled as whole sets.

Routes carry protocol 77 (isthmus), so the agent finds exactly its own and never touches others; a part that
manages a set of its own apart from the rest (a compartment's tunnels) uses another protocol number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from isthmus.linux.run import bridge_batch, bridge_json, ip_batch, ip_json

PROTO = "77"


@dataclass(frozen=True, order=True)
class Route:
    destination: str  # an address (host route) or a prefix
    device: str | None = None
    via: str | None = None
    blackhole: bool = False

    def spec(self) -> str:
        if self.blackhole:
            return f"blackhole {self.destination}"
        via = f" via {self.via}" if self.via else ""
        onlink = " onlink" if self.via else ""
        return f"{self.destination}{via} dev {self.device}{onlink}"


def owned_routes(netns: str | None, proto: str = PROTO) -> set[Route]:
    routes = set()
    for entry in ip_json(netns, "route", "show", "proto", proto):
        dst = entry["dst"]
        dst = dst.removesuffix("/32")
        if entry.get("type") == "blackhole":
            routes.add(Route(dst, blackhole=True))
        else:
            routes.add(Route(dst, entry.get("dev"), entry.get("gateway")))
    return routes


def route_changes(actual: set[Route], desired: Iterable[Route], proto: str = PROTO) -> list[str]:
    """ip batch lines taking the owned routes from `actual` to `desired` (nothing if equal)."""
    wanted = set(desired)
    lines = [f"route del {r.spec()} proto {proto}" for r in sorted(actual - wanted)]
    lines += [f"route replace {r.spec()} proto {proto}" for r in sorted(wanted - actual)]
    return lines


def ensure_routes(
    netns: str | None, desired: Iterable[Route], actual: set[Route] | None = None, proto: str = PROTO
) -> int:
    """Make the routes of protocol `proto` exactly `desired`; `actual` (what the caller knows it left there)
    spares reading them from the kernel."""
    lines = route_changes(owned_routes(netns, proto) if actual is None else actual, desired, proto)
    ip_batch(netns, lines)
    return len(lines)


def ensure_neighbours(netns: str, device: str, desired: dict[str, str]) -> int:
    """Permanent neighbour entries (address -> MAC) on `device`, exactly."""
    actual = {e["dst"]: e.get("lladdr", "") for e in ip_json(netns, "neigh", "show", "dev", device, "nud", "permanent")}
    lines = [f"neigh del {a} dev {device}" for a in sorted(set(actual) - set(desired))]
    lines += [
        f"neigh replace {a} lladdr {mac} dev {device} nud permanent"
        for a, mac in sorted(desired.items())
        if actual.get(a) != mac
    ]
    ip_batch(netns, lines)
    return len(lines)


def ensure_fdb(netns: str, device: str, desired: dict[str, str]) -> int:
    """Static VXLAN forwarding entries (MAC -> remote VTEP) on `device`, exactly: no flooding, no learning."""
    actual = {(e["mac"], e["dst"]) for e in bridge_json(netns, "fdb", "show", "dev", device) if "dst" in e}
    wanted = set(desired.items())
    lines = [f"fdb del {mac} dev {device} dst {dst}" for mac, dst in sorted(actual - wanted)]
    lines += [f"fdb append {mac} dev {device} dst {dst}" for mac, dst in sorted(wanted - actual)]
    bridge_batch(netns, lines)
    return len(lines)
