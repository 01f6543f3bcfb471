"""What each MUX of the lab announces and what the ToR learned from it: the view behind `isthmus lab mux-routes`.

Each source is asked directly: the MUX's speaker (BIRD over its control socket, or gobgpd over its gRPC socket:
what it originates), the ToR's bgpd
(which MUX it learned each prefix from) and the ToR's kernel FIB (the next hops traffic really takes). The
MUX agent's own count of the desired set comes from its status report to the controller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from isthmus.lab import tor
from isthmus.lab.fabric import LabState
from isthmus.linux.bird import SOCKET, BirdError, BirdSpeaker
from isthmus.linux.frr import vtysh
from isthmus.linux.gobgp import GobgpSpeaker
from isthmus.linux.speaker import Speaker


@dataclass(frozen=True)
class MuxView:
    name: str
    address: str
    desired: int | None  # as the MUX agent last reported it
    speaker: str  # bird or gobgp
    announced: set[str] | None  # None: the speaker did not answer
    session: bool  # the ToR's session to it is Established


@dataclass(frozen=True)
class RoutesView:
    muxes: list[MuxView]
    learned: dict[str, list[str]]  # prefix -> MUX names the ToR's bgpd has a path from
    fib: dict[str, list[str]]  # prefix -> next hops in the ToR's kernel FIB

    def prefixes(self) -> list[str]:
        every = set(self.learned) | set(self.fib)
        for mux in self.muxes:
            every |= mux.announced or set()
        return sorted(every, key=_sort_key)

    def as_json(self) -> dict[str, Any]:
        muxes = [
            {"name": m.name, "address": m.address, "desired": m.desired, "session": m.session, "speaker": m.speaker,
             "announced": None if m.announced is None else sorted(m.announced, key=_sort_key)}
            for m in self.muxes
        ]  # fmt: skip
        return {"muxes": muxes, "tor": {"learned": self.learned, "fib": self.fib}}


def collect(state: LabState) -> RoutesView:
    muxes = [node for node in state.topology.nodes() if node.role == "mux"]
    names = {node.underlay: node.name for node in muxes}
    tor_dir = tor.run_dir(state.topology.netns("tor"))
    sessions = tor.established(tor_dir)
    desired = _reported_desired(state)
    views = []
    for node in muxes:
        speaker = mux_speaker(tor.run_dir(state.topology.netns(node.name)))
        kind = "bird" if isinstance(speaker, BirdSpeaker) else "gobgp"
        views.append(MuxView(node.name, node.underlay, desired.get(node.name), kind, _announced(speaker),
                             sessions.get(node.underlay, False)))  # fmt: skip
    learned = {
        prefix: sorted(names.get(peer, peer) for peer in peers)
        for prefix, peers in _tor_rib(vtysh(tor_dir, "show bgp ipv4 unicast json")).items()
    }
    fib = tor.fib_routes(state.topology.netns("tor"))
    fib = {(dst if "/" in dst else f"{dst}/32"): [names.get(h, h) for h in hops] for dst, hops in fib.items()}
    return RoutesView(views, learned, fib)


def mux_speaker(run_dir: Path) -> Speaker:
    """A client of the speaker whose files are in a MUX's run directory: BIRD if its control socket is there,
    else gobgpd (the MUX agent's --speaker)."""
    if (run_dir / "bird" / SOCKET).exists():
        return BirdSpeaker(run_dir / "bird", timeout=5.0)
    return GobgpSpeaker(f"unix://{run_dir / 'gobgpd.sock'}", timeout=5.0)


def _announced(speaker: Speaker) -> set[str] | None:
    try:
        return {str(network) for network in speaker.announced()}
    except (grpc.RpcError, BirdError):
        return None
    finally:
        speaker.close()


def _reported_desired(state: LabState) -> dict[str, int]:
    try:
        with state.operator() as http:
            nodes = http.get("/admin/nodes").json()["value"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    out = {}
    for node in nodes:
        details = (node.get("status") or {}).get("details") or {}
        if node.get("role") == "mux" and isinstance(details.get("announced"), int):
            out[node["name"]] = details["announced"]
    return out


def _tor_rib(out: str) -> dict[str, list[str]]:
    """Prefix -> peers with a valid path, from bgpd's `show bgp ipv4 unicast json`."""
    try:
        routes = json.loads(out).get("routes", {})
    except ValueError:
        return {}
    return {
        prefix: [path.get("peerId", "?") for path in paths if path.get("valid")] for prefix, paths in routes.items()
    }


def _sort_key(prefix: str) -> tuple[int, ...]:
    address, _, length = prefix.partition("/")
    return (*(int(octet) for octet in address.split(".")), int(length or 32))
