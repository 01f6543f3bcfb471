"""The MUX agent: announces every VIP of the MUX document over BGP (BIRD or gobgpd, supervised here) and
forwards each to its backend with a plain /32 route.

Stateless and identical on every MUX (ECMP-safe): a backend that moves changes the route here, never the
announcement. The speaker (--speaker: BIRD over its control socket, linux/bird.py, or gobgpd over gRPC on a
unix socket) runs in this node's namespace and is restarted (then re-configured and re-announced by the same
pass) if it dies; an agent that restarts adopts the speaker it finds answering.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from isthmus.agents.loop import Outcome
from isthmus.linux.bird import BirdProcess, BirdSpeaker
from isthmus.linux.frr import BFD_PROFILE, bfd_profile, start_frr
from isthmus.linux.gobgp import GobgpSpeaker, Network, Peer, start_gobgpd
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import ip_json, sysctl
from isthmus.linux.speaker import DEFAULT_SPEAKER, Speaker

log = logging.getLogger("isthmus.agent.mux")


class GobgpdProcess:
    """One gobgpd, its API on `run_dir/gobgpd.sock`."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.api = f"unix://{run_dir / 'gobgpd.sock'}"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def ensure(self, speaker: Speaker, *, ask: bool = True) -> bool:
        """Make sure a gobgpd runs (with ask, that it answers too); True if one had to be started."""
        if self.process is not None and self.process.poll() is None and not ask:
            return False
        if (self.process is None or self.process.poll() is None) and speaker.ready():
            return False
        if self.process is not None and self.process.poll() is not None:
            self.restarts += 1
            log.warning("gobgpd exited with %s; restarting", self.process.returncode)
        (self.run_dir / "gobgpd.sock").unlink(missing_ok=True)  # a dead gobgpd leaves its socket behind
        with open(self.run_dir / "gobgpd.log", "ab") as log_file:  # the child keeps its own descriptor
            self.process = start_gobgpd(self.api, stdout=log_file, stderr=log_file)
        deadline = time.monotonic() + 10
        while not speaker.ready():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"gobgpd did not start (see {self.run_dir / 'gobgpd.log'})")
            time.sleep(0.02)
        return True


class BfddProcess:
    """FRR bfdd on the MUX, one session per BGP peer with the ToR's profile (lab/tor.py). bfdd daemonises,
    so it outlives an agent killed with -9; the next agent adopts it if it runs the same configuration."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir / "bfdd"
        self.pid: int | None = None
        self.config = ""
        self.restarts = 0

    def alive(self) -> bool:
        return self.pid is not None and Path(f"/proc/{self.pid}").exists()

    def ensure(self, local: str, peers: list[str]) -> bool:
        session = " peer {} local-address {}\n  profile {}\n !\n"
        sessions = "".join(session.format(peer, local, BFD_PROFILE) for peer in sorted(peers))
        config = f"hostname mux\n{bfd_profile()}{sessions}"
        if self.pid is None:
            self._adopt()
        if self.alive() and config == self.config:
            return False
        if self.pid is not None:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
            else:
                self.restarts += 1
        [self.pid] = start_frr(None, self.run_dir, {"bfdd": config})
        self.config = config
        return True

    def _adopt(self) -> None:
        try:
            pid = int((self.run_dir / "run" / "bfdd.pid").read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            config = (self.run_dir / "bfdd.conf").read_text()
        except (OSError, ValueError):
            return
        if b"bfdd" in command and str(self.run_dir).encode() in command:
            self.pid, self.config = pid, config


class MuxReconciler:
    def __init__(self, node: str, run_dir: Path, speaker: str = DEFAULT_SPEAKER) -> None:
        self.node = node
        self.devices: dict[str, str] = {}  # next hop -> the device it is reached on
        self.gobgpd: GobgpdProcess | BirdProcess  # the chosen speaker's daemon
        self.speaker: Speaker
        if speaker == "bird":
            self.gobgpd, self.speaker = BirdProcess(run_dir / "bird"), BirdSpeaker(run_dir / "bird")
        elif speaker == "gobgp":
            gobgpd = GobgpdProcess(run_dir)
            self.gobgpd, self.speaker = gobgpd, GobgpSpeaker(gobgpd.api)
        else:
            raise ValueError(f"unknown speaker {speaker!r}")
        self.bfdd = BfddProcess(run_dir)
        self.last_announce: dict[str, Any] = {}
        self.routes: set[Route] | None = None  # the forwarding routes this agent last left in the kernel
        self.session: tuple[int, str, tuple[Peer, ...]] | None = None
        sysctl(None, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})

    def healthy(self) -> bool:
        process = self.gobgpd.process
        bfd_ok = self.bfdd.pid is None or self.bfdd.alive()
        return (process is None or process.poll() is None) and self.speaker.ready() and bfd_ok

    def _device(self, next_hop: str) -> str:
        if next_hop not in self.devices:
            [route] = ip_json(None, "route", "get", next_hop)
            self.devices[next_hop] = route["dev"]
        return self.devices[next_hop]

    def reconcile(self, doc: dict[str, Any], *, full: bool) -> Outcome:
        started = time.perf_counter()
        if full:
            self.devices.clear()
        routes = []
        announced: set[Network] = set()
        for prefix, vip in doc["vips"].items():
            network = ip_network(prefix)
            announced.add(network)
            if vip["nextHop"] and network.version == 4:
                routes.append(Route(str(network.network_address), self._device(vip["nextHop"]), vip["nextHop"]))
        # Between full passes the kernel and gobgpd are compared with what this agent last made them, so
        # one changed public IP costs one `ip` call and one gRPC stream (the heartbeat watches the daemons).
        changes = ensure_routes(None, routes, None if full else self.routes)
        self.routes = set(routes)
        fresh = self.gobgpd.ensure(self.speaker, ask=full)
        bgp = doc.get("bgp")
        added = withdrawn = 0
        if bgp:
            peers = [Peer(p["address"], p["asn"]) for p in bgp["peers"]]
            session = (bgp["asn"], bgp["routerId"], tuple(peers))
            reconfigure = full or fresh or session != self.session
            changes += self.bfdd.ensure(bgp["routerId"], [p.address for p in peers])
            if reconfigure:
                changes += self.speaker.start(bgp["asn"], bgp["routerId"])
            added, withdrawn = self.speaker.announce(announced, verify=full or fresh)
            if added or withdrawn:  # desired state in hand -> the changed routes handed to gobgpd
                self.last_announce = {"revision": doc.get("revision"), "added": added, "withdrawn": withdrawn,
                                      "ms": round((time.perf_counter() - started) * 1000, 2)}  # fmt: skip
            if reconfigure:
                changes += self.speaker.set_peers(peers)  # after announcing: a new session gets packed UPDATEs
            self.session = session
        details = {
            "vips": len(routes),
            "changes": changes,
            "announced": len(announced),
            "added": added,
            "withdrawn": withdrawn,
            "gobgpdStarted": fresh,
            "lastAnnounce": self.last_announce,
            "gobgpdRestarts": self.gobgpd.restarts,
            "bfddRestarts": self.bfdd.restarts,
        }
        return Outcome(details=details)
