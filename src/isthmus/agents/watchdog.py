"""The gateway node's watchdog: it holds the node's lease, and fences the node's compartments when the lease
ends and the node may no longer answer for their VIPs.

A process of its own (the gateway agent starts it as a supervised daemon in its own session, and adopts it
after a restart), so fencing does not depend on the agent: an agent killed with -9 and not restarted stops
being heard of (its `agent.alive` stamp ages past AGENT_GRACE_S), the watchdog stops renewing, the
controller fails the node and a standby takes over, and the watchdog fences when its own view of the lease
ends, which is first: it counts from when it *sent* the renewal that was answered. An agent restarted within
the grace changes nothing (the lease never lapses; the new agent adopts the compartments).

While renewals fail the watchdog asks the MUXes (agents/witness.py) whether to fence or hold: a controller
that is down costs the data plane nothing; a gateway cut off from a live controller fences before the
controller hands its VIPs to a standby.

To fence is to make the node's compartments unreachable and silent at once, without the agent: each
compartment's charon is killed (by its pid file, checked) and the node's side of every compartment's transit
link goes down (the VIP routes into them go with it). The agent, seeing `fenced` in lease.json, runs no charon
until the watchdog holds a lease again and the agent holds a document at least as new as the lease's.

Files in the run directory (the gateway agent's):
    lease.json   written here, atomically: epoch, deadline (monotonic), fenced, reason, document
    agent.alive  written by the agent every 0.25 s: its monotonic clock
    witnesses    written by the agent: the MUXes' underlay addresses, one per line

Standard library only (plus the two modules beside it): it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from isthmus.agents import witness
from isthmus.agents.lease import LeaseClient, Refused, Unreachable

log = logging.getLogger("isthmus.watchdog")
AGENT_GRACE_S = 3.0  # an agent not heard of for this long is gone: the lease is let go
MARGIN_S = 0.25  # ask the MUXes once the lease has less than this left and renewals fail
EARLY_S = 0.15  # fence this long before the lease ends by this node's count (the controller's ends later)
CHECK_S = 0.02  # the fence's clock
ASK_EVERY_S = 0.1  # while the lease is running out, the MUXes are asked at most this often
SILENT_ASKS = 3  # questions nobody answered, in a row, before "no MUX answers" is taken as the truth
SILENT_ASKS_HOLDING = 30  # ... while holding through a controller outage the MUXes answered (3 s)
LEASE_FILE = "lease.json"
AGENT_STAMP = "agent.alive"
WITNESSES = "witnesses"
TRANSIT = re.compile(r"t\d+")


@dataclass
class LeaseView:
    """What lease.json holds: this node's view of its lease."""

    epoch: int | None = None
    deadline: float = 0.0  # monotonic
    fenced: bool = True
    reason: str = "not yet leased"
    document: int = 0  # the document revision the agent must hold before acting on the compartments
    holding: bool = False  # renewals fail, the lease ended, and the MUXes say the controller is down
    # The last fence of a lease held ({epoch, reason, at: wall-clock seconds}), kept once unfenced: the agent
    # reports it when it can (a fenced node is often cut off), and the controller records it once.
    last_fence: dict[str, Any] | None = None


def read_view(run_dir: Path) -> LeaseView | None:
    try:
        data = json.loads((run_dir / LEASE_FILE).read_text())
        return LeaseView(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_whole(path: Path, text: str) -> None:
    """Written aside, then renamed: a reader never sees half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_view(run_dir: Path, view: LeaseView) -> None:
    _write_whole(run_dir / LEASE_FILE, json.dumps(asdict(view)))


def stamp_agent(run_dir: Path) -> None:
    """The agent's sign of life (its monotonic clock), which the watchdog reads."""
    _write_whole(run_dir / AGENT_STAMP, f"{time.monotonic():.3f}")


def fence_compartments(run_dir: Path, prefix: str, netns: str | None = None, provider: str | None = None) -> list[str]:
    """Kill every compartment's charon and take the node's side of every transit link down (in `netns`, or
    the namespace this process runs in), and its provider-network interface, the parent of every L3 link;
    what it did."""
    ip = ["ip", "-n", netns] if netns else ["ip"]
    done = []
    for directory in sorted(run_dir.glob(f"{prefix}*")):
        pid = _charon_pid(directory)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
                done.append(f"killed charon {pid} of {directory.name}")
            except ProcessLookupError:
                pass
    links = json.loads(subprocess.run([*ip, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)
    up = [link["ifname"] for link in links if (TRANSIT.fullmatch(link["ifname"]) or link["ifname"] == provider)
          and "UP" in link.get("flags", [])]  # fmt: skip
    if up:
        lines = "".join(f"link set {name} down\n" for name in up)
        subprocess.run([*ip, "-force", "-batch", "-"], input=lines, text=True, capture_output=True, check=False)
        done.append(f"transit links down: {' '.join(up)}")
    return done


def _charon_pid(directory: Path) -> int | None:
    try:
        pid = int((directory / "charon.pid").read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "charon" else None


class Watchdog:
    """Two loops: renewals every `interval` (a thread: a renewal may wait for its timeout), and the fence's
    clock every CHECK_S, which never waits on the controller, so it fences on time whatever the network does."""

    def __init__(
        self,
        node: str,
        client: LeaseClient,
        run_dir: Path,
        compartment_prefix: str,
        address: str | None,
        *,
        interval: float = 0.1,
        agent_grace: float = AGENT_GRACE_S,
        netns: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.node = node
        self.provider = provider  # the node's provider-network interface: taken down with the transit links
        self.netns = netns  # where the transit links are (None: this process's namespace, the node's)
        self.client = client
        self.run_dir = run_dir
        self.prefix = compartment_prefix
        self.address = address
        self.interval = interval
        self.agent_grace = agent_grace
        self.started = time.monotonic()
        self.failing_since: float | None = None  # when the first renewal that failed was sent
        self._asked = 0.0
        self._unanswered = 0  # questions to the MUXes in a row that nobody answered
        self._lock = threading.Lock()
        held = read_view(run_dir)
        if held is None:  # nothing says what this node may run: nothing runs until it holds a lease
            self.view = LeaseView()
            self._fence("the watchdog started without a lease")
        else:
            self.view = held

    def agent_alive(self, now: float) -> bool:
        try:
            stamp = float((self.run_dir / AGENT_STAMP).read_text())
        except (OSError, ValueError):
            return now - self.started < self.agent_grace
        return now - stamp < self.agent_grace

    def check(self) -> None:
        """The fence's clock: fence, hold or wait, from the lease's time left and (renewals failing) the MUXes."""
        now = time.monotonic()
        with self._lock:
            if self.view.fenced:
                return
            left = self.view.deadline - now - EARLY_S  # the controller's view ends after ours: fence before it
            failing_since = self.failing_since
        if left > MARGIN_S:
            return
        if not self.agent_alive(now):
            if left <= 0:
                self._fence(f"the agent was not heard of for {self.agent_grace:.0f} s and the lease ended")
            return
        if now - self._asked < ASK_EVERY_S:
            return
        self._asked = now
        since = failing_since if failing_since is not None else now - self.interval
        testimonies = witness.ask(self._witnesses(), self.node, self.address)
        self._unanswered = 0 if testimonies else self._unanswered + 1
        decision = witness.verdict(testimonies, since, time.monotonic(), left - (time.monotonic() - now))
        silent_asks = SILENT_ASKS_HOLDING if self.view.holding else SILENT_ASKS
        if decision == "fence" and not testimonies and self._unanswered < silent_asks:
            return  # a question unanswered may be a lost datagram or a busy MUX: ask again
        if decision == "fence":
            why = "no MUX answers" if not testimonies else "the MUXes hear the controller and this gateway does not"
            self._fence(f"lease ending without a renewal: {why}")
        elif decision == "hold":
            with self._lock:
                if self.view.holding or self.view.fenced:
                    return
                self.view.holding = True
                self.view.reason = f"holding: none of {len(testimonies)} MUXes has heard the controller lately"
                write_view(self.run_dir, self.view)
            log.warning("%s", self.view.reason)

    def renew(self) -> None:
        with self._lock:
            epoch = self.view.epoch
        sent = time.monotonic()
        try:
            granted = self.client.renew(epoch)
        except Refused as refused:
            self._fence(f"the controller refused the lease: {refused}")
            with self._lock:
                self.view.epoch = None  # acquire a new one: this node then joins as a standby
                write_view(self.run_dir, self.view)
            return
        except Unreachable as error:
            if self.failing_since is None:
                self.failing_since = sent
                log.warning("lease renewal failed: %s", error)
            return
        with self._lock:
            self.failing_since = None
            view = self.view
            changed = view.fenced or view.holding or view.epoch != granted.epoch
            if view.fenced:
                log.warning("lease epoch %s held: unfenced", granted.epoch)
                view.document = granted.document
                view.reason = f"leased at epoch {granted.epoch}"
            elif view.holding:
                view.reason = f"leased at epoch {granted.epoch}, held through a controller outage"
            view.epoch, view.deadline = granted.epoch, granted.sent + granted.duration
            view.fenced = view.holding = False
            self.interval = granted.interval
            write_view(self.run_dir, view)
        if changed:
            log.info("lease epoch %s: %s", granted.epoch, view.reason)

    def _fence(self, why: str) -> None:
        with self._lock:
            if self.view.epoch is not None and not self.view.fenced:
                self.view.last_fence = {"epoch": self.view.epoch, "reason": why, "at": round(time.time(), 3)}
            self.view.fenced, self.view.holding, self.view.reason = True, False, why
            write_view(self.run_dir, self.view)  # first: the agent must not restart what is stopped next
            done = fence_compartments(self.run_dir, self.prefix, self.netns, self.provider)
        log.warning("fenced: %s (%s)", why, "; ".join(done) or "nothing ran")

    def _witnesses(self) -> list[str]:
        try:
            return [line.strip() for line in (self.run_dir / WITNESSES).read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def _renew_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                if self.agent_alive(began):
                    self.renew()
            except Exception:
                log.exception("renewal failed")
            stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def run(self, stop: threading.Event) -> None:
        renewer = threading.Thread(target=self._renew_forever, args=(stop,), name="renew", daemon=True)
        renewer.start()
        while not stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("watchdog check failed")
            stop.wait(CHECK_S)
        renewer.join(timeout=2)


def command(node: str, controller: str, token_file: Path, ca: str | None, run_dir: Path, compartment_prefix: str,
            address: str | None, provider: str | None = None) -> tuple[str, ...]:  # fmt: skip
    """The watchdog's command line (what the agent supervises, and what /proc shows)."""
    import sys

    argv = [sys.executable, "-m", "isthmus.agents.watchdog", "--node", node, "--controller", controller,
            "--token-file", str(token_file), "--run-dir", str(run_dir), "--prefix", compartment_prefix]  # fmt: skip
    if ca:
        argv += ["--ca", ca]
    if address:
        argv += ["--address", address]
    if provider:
        argv += ["--provider-device", provider]
    return tuple(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--controller", required=True)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--ca")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--prefix", required=True, help="the node's compartment namespaces' prefix")
    parser.add_argument("--address", help="this node's underlay address (the MUXes route its VIPs to it)")
    parser.add_argument("--provider-device", help="the node's provider-network interface (L3 links' parent)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s watchdog {args.node} %(levelname)s %(message)s")
    client = LeaseClient(args.controller, args.token_file.read_text().strip(), args.ca, args.node)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Watchdog(args.node, client, args.run_dir, args.prefix, args.address, provider=args.provider_device).run(stop)


if __name__ == "__main__":
    main()
