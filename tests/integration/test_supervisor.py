"""The supervisor with real daemons (FRR bfdd, gobgpd, strongSwan's charon) in a namespace made here: start,
adoption by a new supervisor on the same run directory (an agent restarted), a configuration change, a
killed daemon restarted with backoff, a hung one replaced, stop by PID, stale sockets, a reused PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from isthmus.linux.frr import bfd_profile, frr_daemon, vtysh
from isthmus.linux.gobgp import GobgpSpeaker, gobgpd_api, gobgpd_daemon
from isthmus.linux.run import add_netns, delete_netns, in_netns, netns_pids
from isthmus.linux.supervisor import Backoff, Daemon, Supervisor, socket_answers
from tests.support import require_root, wait_for

require_root()


@dataclass
class Bed:
    netns: str
    root: Path  # under /run/isthmus: FRR runs as frr and cannot read a pytest tmp dir
    supervisors: list[Supervisor] = field(default_factory=list)
    speakers: list[GobgpSpeaker] = field(default_factory=list)

    def supervise(self, daemon: Daemon, backoff: Backoff | None = None) -> Supervisor:
        supervisor = Supervisor(daemon, backoff=backoff)
        self.supervisors.append(supervisor)
        return supervisor

    def gobgpd(self, name: str = "gobgpd", **changes: object) -> Daemon:
        speaker = GobgpSpeaker(gobgpd_api(self.root / name))
        self.speakers.append(speaker)
        return replace(gobgpd_daemon(self.root / name, self.netns, probe=speaker.ready), **changes)  # type: ignore[arg-type]

    def bfdd(self, hostname: str = "sv") -> Daemon:
        return frr_daemon(self.netns, self.root / "bfdd", "bfdd", f"hostname {hostname}\n{bfd_profile()}")

    def running(self, program: str) -> list[int]:
        return [pid for pid in netns_pids(self.netns) if _command(pid)[:1] and program in _command(pid)[0]]


def _command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


@pytest.fixture
def bed() -> Iterator[Bed]:
    netns = f"sv{os.getpid() % 100000}"
    made = Bed(netns, Path("/run/isthmus") / netns)
    add_netns(netns)
    try:
        yield made
    finally:
        for speaker in made.speakers:
            speaker.close()
        for supervisor in made.supervisors:
            supervisor.stop()
        leftovers = netns_pids(netns)  # only processes of the namespace made here
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        delete_netns(netns)
        shutil.rmtree(made.root, ignore_errors=True)
        assert not leftovers, [_command(pid) for pid in leftovers]


def test_bfdd_started_in_its_namespace_adopted_never_doubled(bed: Bed) -> None:
    bfdd = bed.supervise(bed.bfdd())
    assert bfdd.ensure() is True and bfdd.healthy()
    assert bed.running("bfdd") == [bfdd.pid]
    assert "profile fast" in vtysh(bed.root / "bfdd", "show running-config")  # its own config, its own vty

    again = bed.supervise(bed.bfdd())  # the agent restarted: a new supervisor on the same run directory
    assert again.alive()
    assert again.ensure() is False and again.pid == bfdd.pid and again.restarts == 0
    assert again.reason == "same command line and configuration"
    assert bed.running("bfdd") == [bfdd.pid]


def test_a_configuration_change_restarts_it(bed: Bed) -> None:
    bfdd = bed.supervise(bed.bfdd("one"))
    bfdd.ensure()
    first = bfdd.pid
    assert bfdd.ensure(bed.bfdd("two")) is True
    assert bfdd.pid != first and bed.running("bfdd") == [bfdd.pid]
    assert "hostname two" in (bed.root / "bfdd" / "bfdd.conf").read_text()
    assert bfdd.restarts == 0  # a new configuration is no failure

    # An agent restarted with other wishes than the one before: the running instance is stopped and replaced.
    other = bed.supervise(bed.bfdd("three"))
    assert other.ensure() is True and other.reason == "its configuration changed"
    assert bed.running("bfdd") == [other.pid]


def test_a_killed_daemon_is_restarted_with_backoff(bed: Bed) -> None:
    gobgpd = bed.supervise(bed.gobgpd(), Backoff(initial=0.2, factor=2.0, cap=4.0, reset_after=1.0))
    assert gobgpd.ensure() is True
    socket = bed.root / "gobgpd" / "gobgpd.sock"
    for restarts in (1, 2):
        killed = gobgpd.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: not gobgpd.alive(), 5)
        assert socket.exists()  # left behind: a new gobgpd would exit 1 on it
        assert gobgpd.ensure() is True and gobgpd.healthy()
        assert gobgpd.restarts == restarts and gobgpd.failures == restarts and gobgpd.pid != killed

    os.kill(gobgpd.pid, signal.SIGKILL)  # a third failure soon after the second waits 0.2 x 2 x 2 s
    wait_for(lambda: not gobgpd.alive(), 5)
    assert gobgpd.ensure(wait=False) is False
    state = gobgpd.state()
    assert not state.alive and state.failures == 3 and 0.4 < state.retry_in <= 0.8
    assert gobgpd.ensure() is True  # waits it out
    assert gobgpd.restarts == 3

    wait_for(lambda: (gobgpd.state().uptime or 0) > 1.0, 5)
    os.kill(gobgpd.pid, signal.SIGKILL)  # after a healthy while the count starts again
    wait_for(lambda: not gobgpd.alive(), 5)
    assert gobgpd.ensure() is True and gobgpd.failures == 1 and gobgpd.restarts == 4


def test_the_heartbeat_looks_while_the_pass_restarts_it(bed: Bed) -> None:
    """alive/healthy/state from another thread (the agent's heartbeat) while ensure restarts the daemon."""
    gobgpd = bed.supervise(bed.gobgpd(), Backoff(initial=0.05))
    gobgpd.ensure()
    done, errors, looks = threading.Event(), [], [0]

    def heartbeat() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            try:
                gobgpd.healthy()
                gobgpd.state()
                looks[0] += 1
            except Exception as error:
                errors.append(error)
            time.sleep(0.001)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    try:
        for _ in range(3):
            assert gobgpd.pid is not None
            os.kill(gobgpd.pid, signal.SIGKILL)
            wait_for(lambda: not gobgpd.alive(), 5)
            assert gobgpd.ensure() is True
    finally:
        done.set()
        thread.join()
    assert not errors and looks[0] > 10
    assert gobgpd.restarts == 3 and gobgpd.healthy() and bed.running("gobgpd") == [gobgpd.pid]


def test_a_stale_socket_does_not_stop_the_next_agent(bed: Bed) -> None:
    gobgpd = bed.supervise(bed.gobgpd())
    gobgpd.ensure()
    assert gobgpd.pid is not None
    os.kill(gobgpd.pid, signal.SIGKILL)
    wait_for(lambda: not gobgpd.alive(), 5)
    socket = bed.root / "gobgpd" / "gobgpd.sock"
    assert socket.exists()
    command = in_netns(bed.netns, gobgpd_daemon(bed.root / "gobgpd").command)
    assert subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 1  # as measured
    fresh = bed.supervise(bed.gobgpd())  # the agent died with it: the next one finds a dead PID and the socket
    assert fresh.ensure() is True and fresh.healthy()
    assert fresh.restarts == 0 and fresh.reason == "not running"
    assert bed.running("gobgpd") == [fresh.pid]


def test_stop_by_pid_only(bed: Bed) -> None:
    first, second = bed.supervise(bed.gobgpd("g1")), bed.supervise(bed.gobgpd("g2"))
    first.ensure()
    second.ensure()
    kept = second.pid
    Supervisor(bed.gobgpd("g1")).stop()  # from another process's point of view: the recorded PID only
    assert bed.running("gobgpd") == [kept]
    assert not (bed.root / "g1" / "gobgpd.sock").exists() and not (bed.root / "g1" / "gobgpd.supervisor.json").exists()

    os.kill(kept, signal.SIGSTOP)  # ignores SIGTERM (stopped): SIGKILL after the bounded wait
    stubborn = bed.supervise(replace(bed.gobgpd("g2"), stop_timeout=0.5))
    assert stubborn.alive()
    stubborn.stop()
    assert bed.running("gobgpd") == [] and not stubborn.alive()


def test_a_hung_daemon_is_replaced(bed: Bed) -> None:
    gobgpd = bed.supervise(bed.gobgpd(hang_timeout=0.5, stop_timeout=0.5))
    gobgpd.ensure()
    hung = gobgpd.pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    assert gobgpd.alive() and not gobgpd.healthy()
    assert gobgpd.ensure(probe=False) is False  # alive is all a cheap pass asks
    assert gobgpd.ensure() is True and gobgpd.healthy()
    assert gobgpd.restarts == 1 and gobgpd.reason == "hung" and bed.running("gobgpd") == [gobgpd.pid]


def test_a_reused_pid_is_left_alone(bed: Bed) -> None:
    gobgpd = bed.supervise(bed.gobgpd())
    gobgpd.ensure()
    record = bed.root / "gobgpd" / "gobgpd.supervisor.json"
    gobgpd.stop()
    stranger = subprocess.Popen(in_netns(bed.netns, ["sleep", "60"]))
    try:
        wait_for(lambda: _command(stranger.pid) == ["sleep", "60"], 5)  # nsenter has exec'd it
        record.write_text(f'{{"command": ["gobgpd"], "digest": "x", "pid": {stranger.pid}}}')
        fresh = bed.supervise(bed.gobgpd())
        assert fresh.ensure() is True and fresh.reason == "the recorded PID is another process now (sleep)"
        fresh.stop()
        assert stranger.poll() is None  # neither ensure nor stop touched it
    finally:
        stranger.kill()
        stranger.wait()


CHARON_CONF = """charon {
  load = random nonce aes sha1 sha2 hmac gmp kdf kernel-netlink socket-default vici
  install_routes = no
  plugins {
    vici { socket = unix:///run/charon.vici }
  }
}
"""


def test_charon_with_a_private_run_directory(bed: Bed) -> None:
    """charon always writes /run/charon.pid: each gets run_dir bound over /run in a mount namespace."""
    run = bed.root / "charon"
    charon = Daemon("charon", ("/usr/lib/ipsec/charon",), run, bed.netns, configs={"strongswan.conf": CHARON_CONF},
                    env={"STRONGSWAN_CONF": "/run/strongswan.conf"}, private_run=True,  # paths as charon sees them
                    stale=(run / "charon.vici", run / "charon.pid"),
                    probe=lambda: socket_answers(run / "charon.vici"))  # fmt: skip
    supervisor = bed.supervise(charon)
    assert supervisor.ensure() is True
    assert (run / "charon.pid").read_text().strip() == str(supervisor.pid)
    stats = subprocess.run(["swanctl", "--stats", "--uri", f"unix://{run / 'charon.vici'}"], capture_output=True,
                           text=True, timeout=10, check=False).stdout  # fmt: skip
    assert "uptime" in stats
    assert bed.supervise(charon).ensure() is False  # adopted
    supervisor.stop()
    assert bed.running("charon") == [] and not (run / "charon.vici").exists()
