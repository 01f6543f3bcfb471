"""Faults on a 2+1 gateway pool with traffic flowing: each test asserts what must survive (the tunnel that
did not move loses no datagram, the one that moved comes back), that no two gateways ever answered for one
VIP, and (the fixture) that nothing is left behind."""

from __future__ import annotations

import subprocess
import time

import pytest

from isthmus.lab import fabric, faults, tor
from isthmus.linux.run import in_netns, list_netns, netns_pids
from tests.chaos.conftest import LONG, Chaos, back
from tests.support import wait_for

BACK_WITHIN_S = 5.0  # generous: the benchmark measures the outage itself (bench/failover.py)


def kinds(chaos: Chaos) -> list[str]:
    return [e["kind"] for e in chaos.events()]


def assert_story(chaos: Chaos, failed: str, standby: str) -> None:
    """The failover reads as one story: the lease lost, the load moved, the standby promoted, the tunnel up."""
    story = [e for e in chaos.events() if e["kind"] in ("lease.lost", "placement.moved", "placement.role",
                                                        "connections.connected")]  # fmt: skip
    names = [e["kind"] for e in story]
    assert names.index("lease.lost") < names.index("placement.moved") < names.index("connections.connected")
    lost = next(e for e in story if e["kind"] == "lease.lost")
    assert lost["details"]["node"] == failed and lost["details"]["silentMs"] >= 500
    assert any(e["kind"] == "placement.role" and f"gateway {standby} is active" in e["message"] for e in story)


def charons(chaos: Chaos, node: str) -> list[int]:
    """Processes still running in `node`'s compartments."""
    return [pid for ns in list_netns() if ns.startswith(f"{chaos.netns(node)}-") for pid in netns_pids(ns)]


def test_kill_9_of_an_active_node_moves_its_tunnel_to_the_standby_and_nothing_else(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    victim = chaos.node_of("a")
    assert victim is not None
    at = probe.mark("kill -9")
    assert faults.kill_node(chaos.netns(victim))
    assert wait_for(lambda: back(probe, "a", at), BACK_WITHIN_S)
    assert chaos.node_of("a") == "gw3" and chaos.node_of("b") != victim
    chaos.connected("a")
    time.sleep(0.5)
    probe.stop()
    sampler.stop()
    report = probe.report()
    assert report.get("b").lost == 0 and report.get("b", "reverse").lost == 0  # the tunnel that did not move
    assert sampler.two_actives_seen == 0
    assert_story(chaos, victim, "gw3")
    fabric.restart_agent(chaos.lab, victim)  # it comes back as the standby and takes nothing back
    assert wait_for(lambda: chaos.gateways()[victim]["liveness"] == "Up", 15)
    time.sleep(2)
    assert chaos.gateways()[victim]["role"] == "standby" and chaos.node_of("a") == "gw3"
    assert wait_for(lambda: not charons(chaos, victim), 10)  # its stale compartment is gone


def test_an_agent_killed_and_restarted_at_once_adopts_its_compartments(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    node = chaos.node_of("a")
    assert node is not None
    before = charons(chaos, node)
    fabric.kill_recorded(chaos.lab, node)
    fabric.restart_agent(chaos.lab, node)
    time.sleep(5)  # past the watchdog's grace for a silent agent
    probe.stop()
    sampler.stop()
    report = probe.report()
    assert report.lost == 0, report
    assert "lease.lost" not in kinds(chaos) and chaos.node_of("a") == node
    assert charons(chaos, node) == before  # the same charon: adopted, not restarted


def test_an_agent_stopped_for_good_lets_its_lease_go_and_its_charons_are_fenced(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    node = chaos.node_of("a")
    assert node is not None
    fabric.kill_recorded(chaos.lab, node)  # the agent only: its watchdog and charons run on
    assert wait_for(lambda: chaos.node_of("a") == "gw3", 10)  # after the agent's grace (3 s) and the lease
    chaos.connected("a")
    assert wait_for(lambda: not any(_comm(p) == "charon" for p in charons(chaos, node)), 5)
    probe.stop()
    sampler.stop()
    assert probe.report().get("b").lost == 0 and sampler.two_actives_seen == 0


def test_silent_links_fence_the_node_before_the_standby_takes_over(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    node = chaos.node_of("a")
    assert node is not None
    for device in ("under0", "mgmt0"):
        faults.silence(chaos.netns(node), device)
    try:
        assert wait_for(lambda: chaos.node_of("a") == "gw3", 10)
        chaos.connected("a")
        time.sleep(0.5)
    finally:
        faults.unsilence(chaos.netns(node))
    probe.stop()
    sampler.stop()
    assert probe.report().get("b").lost == 0 and sampler.two_actives_seen == 0
    log = (tor.run_dir(chaos.netns(node)) / "watchdog.log").read_text()
    assert "fenced: lease ending without a renewal: no MUX answers" in log
    assert wait_for(lambda: chaos.gateways()[node]["liveness"] == "Up", 10)  # back: a new epoch, a standby
    assert [e["details"]["node"] for e in chaos.events("lease.stale")] == [node]
    assert wait_for(lambda: chaos.events("gateway.fenced"), 10)  # told once the node reaches the controller
    [fenced] = chaos.events("gateway.fenced")
    assert fenced["details"]["node"] == node and "no MUX answers" in fenced["details"]["reason"]
    time.sleep(1)
    assert chaos.gateways()[node]["role"] == "standby" and chaos.node_of("a") == "gw3"


@pytest.mark.parametrize("chaos", [2], indirect=True)
def test_every_controller_replica_stopped_for_a_minute_costs_no_tunnel_anything(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    fabric.stop_controller(chaos.lab)
    try:
        time.sleep(60)
    finally:
        fabric.start_again_controller(chaos.lab)
    time.sleep(3)  # renewed within the controller's grace
    probe.stop()
    sampler.stop()
    report = probe.report()
    assert report.lost == 0, report
    assert sampler.two_actives_seen == 0
    assert "lease.lost" not in kinds(chaos)
    log = (tor.run_dir(chaos.netns("gw1")) / "watchdog.log").read_text()
    assert "holding: none of 2 MUXes has heard the controller lately" in log


def test_a_second_failure_without_a_standby_fails_its_connections_until_nodes_return(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    first, second = chaos.node_of("a"), chaos.node_of("b")
    assert first is not None and second is not None
    faults.kill_node(chaos.netns(first))
    assert wait_for(lambda: chaos.node_of("a") == "gw3", 10)
    chaos.connected("a")
    time.sleep(1.0)
    at = probe.mark("the second failure")
    faults.kill_node(chaos.netns(second))
    b = chaos.sides["b"].tenant
    assert wait_for(lambda: chaos.node_of("b") is None, 10)  # no standby left, no room on gw3
    assert wait_for(lambda: b.get("connections/to-onprem")["properties"]["provisioningState"] == "Failed", 10)
    reason = b.get("connections/to-onprem")["properties"].get("connectionStatusReason", "")
    assert "capacity exhausted on pool all" in reason, reason
    # The first node back restores the pool's standby; the second joins as an active, and b is placed on it.
    fabric.restart_agent(chaos.lab, first)
    assert wait_for(lambda: chaos.gateways()[first]["liveness"] == "Up", 15)
    assert chaos.gateways()[first]["role"] == "standby"
    fabric.restart_agent(chaos.lab, second)
    assert wait_for(lambda: chaos.node_of("b") == second, 20)
    assert chaos.connected("b", 30)["properties"]["connectionStatus"] == "Connected"
    probe.stop()
    sampler.stop()
    assert sampler.two_actives_seen == 0
    assert probe.report().get("a").outage_after(at) is None  # a, on gw3, never noticed


def test_a_mux_killed_during_a_failover_does_not_stop_it(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    victim = chaos.node_of("a")
    assert victim is not None
    faults.kill_node(chaos.netns(victim))
    time.sleep(0.3)
    faults.kill_node(chaos.netns("mux1"))  # its BGP speaker too: the ToR routes the VIPs through mux2
    assert wait_for(lambda: chaos.node_of("a") == "gw3", 10)
    chaos.connected("a", 30)
    at = probe.mark("failed over")
    assert wait_for(lambda: back(probe, "a", at), BACK_WITHIN_S)
    probe.stop()
    sampler.stop()
    assert sampler.two_actives_seen == 0
    fabric.restart_agent(chaos.lab, "mux1")


def test_a_tor_session_flap_moves_no_gateway(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    tor = chaos.netns("tor")
    subprocess.run(in_netns(tor, ["vtysh", "-N", tor, "-c", "clear ip bgp *"]), check=False, capture_output=True)
    time.sleep(8 if LONG else 5)
    at = probe.mark("after the flap")
    assert wait_for(lambda: all(probe.report().get(s).first_after(at) for s in ("a", "b")), 10)
    probe.stop()
    sampler.stop()
    assert "lease.lost" not in kinds(chaos) and sampler.two_actives_seen == 0
    assert {chaos.node_of("a"), chaos.node_of("b")} == {"gw1", "gw2"}


def test_the_controller_killed_during_a_failover_completes_it_when_it_is_back(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    victim = chaos.node_of("a")
    assert victim is not None
    faults.kill_node(chaos.netns(victim))
    assert wait_for(lambda: "lease.lost" in kinds(chaos), 5)
    fabric.stop_controller(chaos.lab)
    time.sleep(2)
    fabric.start_again_controller(chaos.lab)
    assert wait_for(lambda: chaos.node_of("a") == "gw3", 15)
    chaos.connected("a", 30)
    probe.stop()
    sampler.stop()
    assert probe.report().get("b").lost == 0 and sampler.two_actives_seen == 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""
