"""`isthmus lab` as a user runs it, on one lab for the module: a lab is its workdir's state, so commands on
another workdir touch nothing of it; `up` never builds beside it; `status` fails naming what is dead; VMs are
never silently moved; errors are one line on stderr; -o is the global option. Then `down` removes all it started,
the controller too; and `down` after an `up` killed half-way leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from isthmus.lab import fabric
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import list_netns
from tests.support import require_root, wait_for

require_root()

PREFIX = f"lc{os.getpid() % 10000}-"
SUB = "00000000-0000-0000-0000-0000000000d9"


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ISTHMUS_LAB"} | {"COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "isthmus", *args], env=env, capture_output=True, text=True, timeout=180
    )


def fails(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one-line error of a failed command, checked to hold `words`."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("isthmus: error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("labcli")
    try:
        up = isthmus("lab", "up", "--workdir", str(workdir), "--prefix", PREFIX, "--hosts", "2", "--gateways", "0")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"lab up: a fresh store in {workdir}/isthmus.db (any previous lab store there is replaced)" in up.stdout
        yield workdir
    finally:
        fabric.down(workdir, PREFIX)
        assert not [n for n in list_netns() if n.startswith(PREFIX)]


def state(workdir: Path) -> fabric.LabState:
    loaded = fabric.load_state(workdir)
    assert loaded is not None
    return loaded


def test_another_workdir_is_another_lab(lab: Path, tmp_path: Path) -> None:
    fails(isthmus("lab", "down", "--workdir", str(tmp_path)), f"no lab in {tmp_path}", "nothing removed")
    fails(isthmus("lab", "down", "--workdir", str(tmp_path), "--prefix", PREFIX), f"belong to the lab in {lab}")
    fails(isthmus("lab", "status", "--workdir", str(tmp_path)), f"no lab in {tmp_path}")
    fails(isthmus("lab", "vm", "list", "--workdir", str(tmp_path)), f"no lab in {tmp_path}", "lab up")
    fails(isthmus("lab", "up", "--workdir", str(lab), "--prefix", "lz-"), f"a lab is up in {lab}", "lab down")
    fails(isthmus("lab", "up", "--workdir", str(tmp_path), "--prefix", PREFIX), f"{PREFIX}* exist (the lab in {lab})")
    assert not (tmp_path / fabric.STATE_FILE).exists()
    assert isthmus("lab", "status", "--workdir", str(lab)).returncode == 0  # all of it still runs


def test_status_and_mux_routes_print_as_the_global_output_says(lab: Path) -> None:
    table = isthmus("lab", "status", "--workdir", str(lab))
    assert table.returncode == 0, table.stderr
    assert "health" in table.stdout and "live" in table.stdout and "True" not in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    report = yaml.safe_load(isthmus("lab", "status", "--workdir", str(lab), "-o", "yaml").stdout)
    assert report["dead"] == [] and {n["name"] for n in report["nodes"]} == {"h1", "h2", "mux1"}
    assert all(p["running"] for p in report["processes"].values())

    routes = isthmus("-o", "json", "lab", "mux-routes", "--workdir", str(lab))
    assert routes.returncode == 0, routes.stderr
    assert [(m["name"], m["session"]) for m in json.loads(routes.stdout)["muxes"]] == [("mux1", True)]
    table = isthmus("lab", "mux-routes", "--workdir", str(lab))
    assert "MUX announcements" in table.stdout and max(len(line) for line in table.stdout.splitlines()) <= 80
    assert isthmus("mux", "routes", "--workdir", str(lab), "-o", "json").stdout == routes.stdout  # the old name
    help_text = isthmus("lab", "--help").stdout
    assert "mux-routes" in help_text and "What each MUX announces" in help_text


def test_a_vm_is_never_moved_silently(lab: Path) -> None:
    t = Tenant(state(lab), SUB)
    t.vnet("v", "100.64.0.0/16", {"s": "100.64.9.0/24"})
    t.nic("n1", "v", "s")
    nic = t.id("networkInterfaces/n1")
    vm = ("lab", "vm", "create", "vm1", "--nic", nic, "--workdir", str(lab))
    created = isthmus(*vm, "--host", "h1")
    assert created.returncode == 0 and "VM vm1 on h1: 100.64.9.4" in created.stdout, created.stdout + created.stderr
    group = nic.split("/")[4]
    by_name = ("lab", "vm", "create", "vm1", "--nic", "n1", "-g", group, "-s", SUB, "--workdir", str(lab))
    again = isthmus(*by_name, "--host", "h1")  # the same NIC, by name
    assert again.returncode == 0 and "VM vm1 on h1: 100.64.9.4" in again.stdout and "unchanged" in again.stdout
    fails(isthmus(*vm, "--host", "h2"), "VM vm1 exists on h1", "lab vm delete vm1")
    assert [n for n in list_netns() if n.startswith(PREFIX) and n.endswith("-vm-vm1")] == [f"{PREFIX}h1-vm-vm1"]
    bad = isthmus("lab", "vm", "create", "vm3", "--nic", "/subscriptions/x/nope", "--workdir", str(lab))
    fails(bad, "InvalidResourceReference: networkInterface must be a networkInterfaces id")
    fails(isthmus("lab", "vm", "create", "vm3", "--nic", "n1", "--workdir", str(lab)), "give its --group")
    fails(isthmus("lab", "vm", "delete", "nosuch", "--workdir", str(lab)), f"no VM nosuch in the lab at {lab}")

    listed = yaml.safe_load(isthmus("lab", "vm", "list", "-o", "yaml", "--workdir", str(lab)).stdout)
    assert [(v["name"], v["host"], v["addresses"]) for v in listed] == [("vm1", "h1", ["100.64.9.4"])]
    deleted = isthmus("lab", "vm", "delete", "vm1", "--workdir", str(lab))
    assert deleted.returncode == 0, deleted.stderr


def test_status_names_the_dead_and_down_stops_everything_it_started(lab: Path) -> None:
    """Last in the module: it ends the lab."""
    started = state(lab)
    os.kill(started.pids["h2"], signal.SIGKILL)
    wait_for(lambda: not started.running("h2"))
    fails(isthmus("lab", "status", "--workdir", str(lab)), f"the lab in {lab} is not whole", "agent h2 (pid ")

    down = isthmus("lab", "down", "--workdir", str(lab))
    assert down.returncode == 0, down.stderr
    assert not [n for n in list_netns() if n.startswith(PREFIX)]
    assert not [name for name, pid in started.pids.items() if fabric._ours(pid, started.started.get(name))]
    assert not (lab / fabric.STATE_FILE).exists()
    fails(isthmus("lab", "down", "--workdir", str(lab)), f"no lab in {lab}")


def test_down_after_an_up_killed_half_way(tmp_path: Path) -> None:
    """Killed while its controller starts: the state was saved first, so `down` finds and ends all of it."""
    prefix = f"lh{os.getpid() % 10000}-"
    env = {**os.environ, "COLUMNS": "80"}
    command = [sys.executable, "-m", "isthmus", "lab", "up", "--workdir", str(tmp_path), "--prefix", prefix]
    up = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "controller.log").exists() or up.poll() is not None, 60)
        time.sleep(0.2)
    finally:
        up.kill()
        up.wait(10)
    db = state(tmp_path).db
    try:
        fails(isthmus("lab", "status", "--workdir", str(tmp_path)), "not whole")
        down = isthmus("lab", "down", "--workdir", str(tmp_path))
        assert down.returncode == 0, down.stderr
        assert not [n for n in list_netns() if n.startswith(prefix)]
        assert fabric._unrecorded_controller(fabric.LabState(prefix, str(tmp_path), 1, 1, 0, db, "", "", "")) is None
        assert not (tmp_path / fabric.STATE_FILE).exists()
    finally:
        fabric.down(tmp_path, prefix)
