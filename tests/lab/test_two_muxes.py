"""Two MUXes: the ToR spreads every public IP over both (ECMP) and `isthmus lab mux-routes` shows it; the speaker or
the MUX agent crashing never costs the ToR a route while the other MUX is healthy; when one MUX's link goes
silent or the whole MUX dies, traffic to public IPs continues through the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.lab import fabric, probe, vms
from isthmus.lab.faults import silence, unsilence
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import Topology
from isthmus.lab.tor import next_hops as tor_next_hops
from isthmus.linux.run import netns_pids
from isthmus.linux.speaker import DEFAULT_SPEAKER
from tests.support import require_root, speaker_pids, wait_for

require_root()
BOTH = ["198.18.0.11", "198.18.0.12"]


@pytest.fixture(scope="module")
def lab2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fabric.LabState]:
    workdir = tmp_path_factory.mktemp("lab2")
    prefix = f"it{os.getpid() % 10000}y{zlib.crc32(b'two') % 100:02d}-"
    state = fabric.up(workdir, Topology(prefix, hosts=1, muxes=2, gateways=0))
    try:
        yield state
    finally:
        fabric.down(Path(workdir), prefix)


@pytest.fixture(scope="module")
def served(lab2: fabric.LabState) -> Iterator[tuple[str, vms.Vm]]:
    """A public IP on a VM that answers on port 80."""
    t = Tenant(lab2, "00000000-0000-0000-0000-0000000000f1")
    t.nsg("web", [rule("web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"s": "100.64.1.0/24"}, nsg="web")
    vip = t.public_ip("pip")
    t.nic("n1", "vnet1", "s", public_ip="pip")
    vm = vms.create(lab2, "v1", t.id("networkInterfaces/n1"), "h1")
    with probe.server(vm.netns, "0.0.0.0", 80):
        yield vip, vm


def next_hops(lab: fabric.LabState, address: str) -> list[str]:
    return tor_next_hops(lab.topology.netns("tor"), address)


class FibWatch:
    """Samples the ToR's next hops for one address in the background (every ~20 ms, at most 60 s)."""

    def __init__(self, lab: fabric.LabState, address: str) -> None:
        self.lab, self.address = lab, address
        self.samples: list[list[str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.samples.append(next_hops(self.lab, self.address))
            time.sleep(0.02)

    def __enter__(self) -> FibWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def mux_details(lab: fabric.LabState, name: str) -> dict[str, object]:
    with lab.operator() as http:
        nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
    return dict(nodes[name]["status"]["details"])


def test_ecmp_and_mux_routes(lab2: fabric.LabState, served: tuple[str, vms.Vm]) -> None:
    vip, _vm = served
    assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 15)
    assert wait_for(lambda: probe.tcp_echo(lab2.topology.netns("inet"), vip, 80, timeout=0.3), 15)
    env = {**os.environ, "ISTHMUS_LAB": lab2.workdir, "COLUMNS": "200"}
    shown = subprocess.run([sys.executable, "-m", "isthmus", "lab", "mux-routes", "-o", "json"], env=env,
                           capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    view = json.loads(shown.stdout)
    announced = view["muxes"][0]["announced"]  # the VM's public IP and h1's outbound NAT address
    assert f"{vip}/32" in announced and len(announced) == 2
    assert [(m["name"], m["session"], m["announced"], m["desired"]) for m in view["muxes"]] == [
        ("mux1", True, announced, 2),
        ("mux2", True, announced, 2),
    ]
    assert view["tor"]["learned"] == view["tor"]["fib"] == {prefix: ["mux1", "mux2"] for prefix in announced}
    assert {m["speaker"] for m in view["muxes"]} == {DEFAULT_SPEAKER}  # what the agents run unless told otherwise
    table = subprocess.run([sys.executable, "-m", "isthmus", "mux", "routes"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert f"{vip}/32" in table and "Established" in table


def test_restarts_never_cost_the_tor_a_route(lab2: fabric.LabState, served: tuple[str, vms.Vm]) -> None:
    vip, _vm = served
    mux1 = lab2.topology.netns("mux1")
    assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 15)
    with FibWatch(lab2, vip) as speaker_crash:
        [speaker] = speaker_pids(mux1)  # gobgpd or BIRD, whichever the agent runs
        os.kill(speaker, signal.SIGKILL)
        assert wait_for(lambda: next_hops(lab2, vip) == ["198.18.0.12"], 10)
        assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 30)  # restarted by the agent, announced again
    assert all(speaker_crash.samples) and len(speaker_crash.samples) > 20
    assert wait_for(lambda: probe.tcp_echo(lab2.topology.netns("inet"), vip, 80, timeout=0.3), 15)

    # The agent itself killed with -9 and restarted: it adopts gobgpd and bfdd, the ToR notices nothing.
    restarts = mux_details(lab2, "mux1")["gobgpdRestarts"]
    with FibWatch(lab2, vip) as agent_crash:
        os.kill(lab2.pids["mux1"], signal.SIGKILL)
        time.sleep(1.0)
        pid = fabric.restart_agent(lab2, "mux1")
        assert wait_for(lambda: mux_details(lab2, "mux1").get("pid") == pid, 20)
        time.sleep(1.0)
    assert agent_crash.samples and all(hops == BOTH for hops in agent_crash.samples)
    details = mux_details(lab2, "mux1")
    assert details["gobgpdStarted"] is False and details["gobgpdRestarts"] == 0 != restarts
    bfdd = [pid for pid in netns_pids(mux1) if b"bfdd" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(bfdd) == 1


def test_a_silently_dead_link(lab2: fabric.LabState, served: tuple[str, vms.Vm]) -> None:
    """mux1's link drops everything, forwarded traffic included: BFD takes it out of the ECMP set and new
    flows all go through mux2; when the link heals, mux1 is back by itself."""
    vip, _vm = served
    inet, mux1 = lab2.topology.netns("inet"), lab2.topology.netns("mux1")
    assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 30)
    silence(mux1, "under0")
    try:
        assert wait_for(lambda: next_hops(lab2, vip) == ["198.18.0.12"], 10)
        for _ in range(20):
            assert probe.tcp_echo(inet, vip, 80, timeout=1.0)
    finally:
        unsilence(mux1)
    assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 30)


def test_a_dead_mux(lab2: fabric.LabState, served: tuple[str, vms.Vm]) -> None:
    vip, _vm = served
    inet = lab2.topology.netns("inet")
    assert wait_for(lambda: next_hops(lab2, vip) == BOTH, 30)
    for pid in netns_pids(lab2.topology.netns("mux1")):  # the whole MUX node dies: agent, gobgpd, bfdd
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: next_hops(lab2, vip) == ["198.18.0.12"], 15)
    for _ in range(20):  # every new flow goes through the MUX that is left
        assert probe.tcp_echo(inet, vip, 80, timeout=1.0)
