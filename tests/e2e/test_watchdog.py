"""The gateway's watchdog (agents/watchdog.py) against a real controller over HTTPS and a witness on
loopback: it holds a lease, and when renewals fail it fences (the MUXes hear the controller, or nobody
answers) or holds (nobody hears the controller); an agent that stops stamping lets the lease go.

Fencing is real: a process named charon (a copy of sleep) is killed by its pid file, and a veth named like a
transit link, in a namespace this test creates, goes down."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.agents import watchdog
from isthmus.agents.lease import LeaseClient
from isthmus.agents.witness import WitnessServer
from isthmus.lab.controller import free_port
from isthmus.linux.run import add_netns, delete_netns, ip_json
from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.e2e.conftest import Live
from tests.support import wait_for

PREFIX = "wdt-gw"


@dataclass
class Contact:
    """A MUX's view of the controller, as the test wants it."""

    age_s: float | None
    streak_s: float

    def age(self) -> float | None:
        return self.age_s

    def streak(self) -> float:
        return self.streak_s


@dataclass
class Node:
    run_dir: Path
    netns: str
    witness_port: int
    client: LeaseClient
    charon: subprocess.Popen[bytes] | None = None

    def start_compartment(self) -> None:
        """What a gateway agent runs once the node holds a lease: a charon, the transit link up."""
        self.charon = subprocess.Popen([str(self.run_dir / "charon"), "120"])
        (self.run_dir / f"{PREFIX}4096" / "charon.pid").write_text(f"{self.charon.pid}\n")
        subprocess.run(["ip", "-n", self.netns, "link", "set", "t4096", "up"], check=True)

    def charon_killed(self) -> bool:
        return self.charon is not None and self.charon.poll() is not None

    def link_up(self) -> bool:
        [link] = ip_json(self.netns, "link", "show", "dev", "t4096")
        return "UP" in link["flags"]


@pytest.fixture
def node(live: Live, tmp_path: Path) -> Iterator[Node]:
    engine = make_engine(live.db)
    token = tokens.create(engine, "node", "wd1")
    engine.dispose()
    netns = f"wdt{os.getpid() % 100000}"
    add_netns(netns)
    sleeper = tmp_path / "charon"
    shutil.copy("/bin/sleep", sleeper)
    (tmp_path / f"{PREFIX}4096").mkdir()
    held = Node(tmp_path, netns, free_port(), LeaseClient(live.url, token, str(live.ca), "wd1"))
    try:
        subprocess.run(["ip", "-n", netns, "link", "add", "t4096", "type", "veth", "peer", "name", "up0"], check=True)
        (tmp_path / watchdog.WITNESSES).write_text(f"127.0.0.1:{held.witness_port}\n")
        watchdog.stamp_agent(tmp_path)
        yield held
    finally:
        if held.charon is not None:
            held.charon.kill()
            held.charon.wait()
        delete_netns(netns)


@pytest.fixture
def running(node: Node) -> Iterator[watchdog.Watchdog]:
    dog = watchdog.Watchdog("wd1", node.client, node.run_dir, PREFIX, "127.0.0.1", netns=node.netns)
    stop = threading.Event()
    thread = threading.Thread(target=dog.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: not dog.view.fenced, 5), dog.view  # it starts fenced, then holds a lease
        node.start_compartment()
        yield dog
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def cut_off(node: Node) -> float:
    """The controller no longer answers this node (a port nobody listens on); when."""
    node.client.urls = [url.rsplit(":", 1)[0] + ":9" for url in node.client.urls]
    node.client.close()
    return time.monotonic()


def test_cut_off_from_a_controller_the_muxes_hear_it_fences_before_its_lease_ends(
    node: Node, running: watchdog.Watchdog
) -> None:
    server = WitnessServer("mux1", "127.0.0.1", Contact(0.02, 600.0), lambda _a: [], port=node.witness_port)  # type: ignore[arg-type]
    try:
        deadline = running.view.deadline
        cut_off(node)
        assert wait_for(lambda: running.view.fenced, 3)
        fenced_at = time.monotonic()
        assert fenced_at < deadline + 0.1  # on its own clock, and so before the controller's ends
        assert "the MUXes hear the controller" in running.view.reason
        assert wait_for(lambda: node.charon_killed(), 2)  # charon killed
        assert wait_for(lambda: not node.link_up(), 2)  # the transit link is down
        assert watchdog.read_view(node.run_dir) == running.view  # the agent reads the same
    finally:
        server.close()


def test_nobody_hears_the_controller_the_gateway_holds(node: Node, running: watchdog.Watchdog) -> None:
    server = WitnessServer("mux1", "127.0.0.1", Contact(30.0, 0.0), lambda _a: [], port=node.witness_port)  # type: ignore[arg-type]
    try:
        cut_off(node)
        assert wait_for(lambda: running.view.holding, 3)
        time.sleep(1.0)
        assert not running.view.fenced and not node.charon_killed() and node.link_up()
    finally:
        server.close()


def test_no_mux_answers_it_fences_when_the_lease_ends(node: Node, running: watchdog.Watchdog) -> None:
    deadline = running.view.deadline
    cut_off(node)
    assert wait_for(lambda: running.view.fenced, 3)
    assert "no MUX answers" in running.view.reason and time.monotonic() < deadline + 0.1
    assert wait_for(lambda: node.charon_killed() and not node.link_up(), 2)


def test_an_agent_that_stops_stamping_lets_the_lease_go_and_is_fenced(node: Node, running: watchdog.Watchdog) -> None:
    running.agent_grace = 0.3  # (3 s in a node: long enough for an agent restarted at once)
    assert wait_for(lambda: running.view.fenced, 3)
    assert "the agent was not heard of" in running.view.reason
    assert wait_for(lambda: node.charon_killed() and not node.link_up(), 2)
