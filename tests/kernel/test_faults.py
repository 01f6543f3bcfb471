"""The bad-link fault (lab/faults.degrade and restore, netem) on Debian's kernel, inside ONE guest: two
namespaces joined by a veth, one Python in the guest degrading and restoring its ends while ping measures; and
on this host, whose kernel may lack netem, the refusal that changes nothing."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import isthmus
from isthmus.lab.faults import FaultUnavailable, degrade, restore
from isthmus.lab.kernel.guest import boot_guest
from isthmus.lab.kernel.image import KernelImage
from isthmus.linux.run import add_netns, delete_netns, in_netns, ip_batch, run

HERE = Path(__file__).parent
SCRIPT = (
    (HERE / "guest_lib.sh").read_text()
    + """
pair nf-a nf-b 192.0.2.1/24 192.0.2.2/24 || exit 1
"$ISTHMUS_PYTHON" faults_guest.py > faults.partial && mv faults.partial faults.json
"""
)

# Runs in the guest (its share folder is the current directory): every step's ping or tc output, as JSON.
GUEST_PROGRAM = """
import json, subprocess
from isthmus.lab.faults import degrade, restore

def ping():
    p = subprocess.run(["ip", "netns", "exec", "nf-a", "ping", "-n", "-c", "3", "-i", "0.2", "-w", "3",
                        "192.0.2.2"], capture_output=True, text=True)
    return {"rc": p.returncode, "out": p.stdout + p.stderr}

def qdisc(netns):
    return subprocess.run(["tc", "-n", netns, "qdisc", "show", "dev", "eth0", "root"],
                          capture_output=True, text=True).stdout

steps = {"baseline": ping()}
degrade("nf-a", "eth0", delay_ms=100)
degrade("nf-b", "eth0", delay_ms=100)
steps["delay"] = ping()
restore("nf-b", "eth0")
degrade("nf-a", "eth0", loss_percent=100)  # replaces the delay
steps["loss"] = ping()
degrade("nf-a", "eth0", duplicate_percent=100)
steps["duplicate"] = ping()
degrade("nf-a", "eth0", delay_ms=10, jitter_ms=5, loss_percent=1, reorder_percent=25, duplicate_percent=2)
steps["every_qdisc"] = qdisc("nf-a")
restore("nf-a", "eth0")
restore("nf-a", "eth0")  # nothing to undo: no error
steps["restored"] = ping()
steps["restored_qdisc"] = qdisc("nf-a") + qdisc("nf-b")
print(json.dumps(steps))
"""


@pytest.fixture(scope="module")
def steps(kernel: KernelImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """What the guest's program recorded, once the guest has powered off (bounded)."""
    env = {"ISTHMUS_PYTHON": sys.executable, "PYTHONPATH": str(Path(isthmus.__file__).resolve().parents[1])}
    workdir = tmp_path_factory.mktemp("faults")
    (workdir / "share").mkdir()
    (workdir / "share" / "faults_guest.py").write_text(GUEST_PROGRAM)
    with boot_guest("faults", workdir, script=SCRIPT, env=env, image=kernel) as guest:
        result = guest.wait(timeout=120)
        assert result.exit_code == 0 and (guest.share / "faults.json").exists(), result.output
        yield json.loads((guest.share / "faults.json").read_text())


def rtts(step: dict[str, Any]) -> list[float]:
    return [float(ms) for ms in re.findall(r"time=([\d.]+) ms", step["out"])]


def test_an_undegraded_link_answers_at_once(steps: dict[str, Any]) -> None:
    baseline = steps["baseline"]
    assert baseline["rc"] == 0 and "3 received" in baseline["out"], baseline["out"]
    assert max(rtts(baseline)) < 50, baseline["out"]


def test_a_delay_on_both_ends_adds_to_the_round_trip(steps: dict[str, Any]) -> None:
    delayed = steps["delay"]
    assert delayed["rc"] == 0 and "3 received" in delayed["out"], delayed["out"]
    times = rtts(delayed)
    assert len(times) == 3 and min(times) >= 199 and max(times) < 600, delayed["out"]


def test_a_total_loss_lets_no_ping_through(steps: dict[str, Any]) -> None:
    lost = steps["loss"]
    assert lost["rc"] != 0 and "100% packet loss" in lost["out"], lost["out"]


def test_duplication_makes_ping_see_duplicates(steps: dict[str, Any]) -> None:
    duplicated = steps["duplicate"]
    assert duplicated["rc"] == 0 and "DUP!" in duplicated["out"], duplicated["out"]


def test_every_option_reaches_the_kernel(steps: dict[str, Any]) -> None:
    shown = steps["every_qdisc"]
    for option in ("netem", "delay 10ms", " 5ms", "loss 1%", "duplicate 2%", "reorder 25%"):
        assert option in shown, shown


def test_restore_brings_the_link_back(steps: dict[str, Any]) -> None:
    restored = steps["restored"]
    assert restored["rc"] == 0 and "3 received" in restored["out"], restored["out"]
    assert max(rtts(restored)) < 50, restored["out"]
    assert "netem" not in steps["restored_qdisc"], steps["restored_qdisc"]


@pytest.fixture
def host_netns() -> Iterator[str]:
    """A namespace on this host with a veth pair (v0, v1), removed afterwards."""
    name = f"ik{os.getpid() % 100000}-faults"
    add_netns(name)
    try:
        ip_batch(name, ["link add v0 type veth peer name v1", "link set v0 up", "link set v1 up"])
        yield name
    finally:
        delete_netns(name)


def test_without_netem_degrade_refuses_and_changes_nothing(host_netns: str) -> None:
    before = run(in_netns(host_netns, ["tc", "qdisc", "show", "dev", "v0"]))
    try:
        degrade(host_netns, "v0", delay_ms=100)
    except FaultUnavailable as error:
        assert "netem" in str(error) and f"node {host_netns}" in str(error) and "real-kernel tier" in str(error)
    else:
        restore(host_netns, "v0")
        pytest.skip("this host's kernel has netem (the guest tests cover degrade)")
    assert run(in_netns(host_netns, ["tc", "qdisc", "show", "dev", "v0"])) == before
    assert "netem" not in before
    restore(host_netns, "v0")  # nothing to undo, no error
