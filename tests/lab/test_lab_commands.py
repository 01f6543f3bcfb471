"""The lab as an operator drives it from the shell: up, status, vm create/exec/list/delete, down — and
down after a crash (the state file gone, processes killed) still removes everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from isthmus.lab import fabric
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import list_netns
from tests.support import require_root

require_root()


def isthmus(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ISTHMUS_LAB": str(workdir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "isthmus", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_commands_and_down_after_a_crash(tmp_path: Path) -> None:
    prefix = f"ic{os.getpid() % 10000}-"
    try:
        up = isthmus("lab", "up", "--hosts", "1", "--gateways", "1", "--prefix", prefix, workdir=tmp_path)
        assert up.returncode == 0, up.stdout + up.stderr
        again = isthmus("lab", "up", "--prefix", prefix, workdir=tmp_path)
        assert again.returncode == 1 and "lab down" in again.stderr  # never two labs in one workdir

        status = json.loads(isthmus("lab", "status", "-o", "json", workdir=tmp_path).stdout)
        assert {n["name"] for n in status["nodes"] if n["live"]} == {"gw1", "h1", "mux1"} and status["dead"] == []
        assert all(p["running"] for p in status["processes"].values())

        state = fabric.load_state(tmp_path)
        assert state is not None
        tenant = Tenant(state, "00000000-0000-0000-0000-0000000000d1")
        tenant.vnet("v", "100.64.0.0/16", {"s": "100.64.9.0/24"})
        tenant.nic("n1", "v", "s")
        created = isthmus("lab", "vm", "create", "vm1", "--nic", tenant.id("networkInterfaces/n1"), workdir=tmp_path)
        assert created.returncode == 0 and "100.64.9.4" in created.stdout, created.stdout + created.stderr
        ping = isthmus("lab", "vm", "exec", "vm1", "--", "ping", "-c1", "-W1", "100.64.9.1", workdir=tmp_path)
        assert ping.returncode == 0, ping.stdout
        listed = json.loads(isthmus("lab", "vm", "list", "-o", "json", workdir=tmp_path).stdout)
        assert [(v["name"], v["host"], v["addresses"]) for v in listed] == [("vm1", "h1", ["100.64.9.4"])]
        assert isthmus("lab", "vm", "delete", "vm1", workdir=tmp_path).returncode == 0

        # A crash: every process the lab started dies at once, and the state file is lost with it.
        for pid in state.pids.values():
            if fabric._ours(pid):
                os.kill(pid, signal.SIGKILL)
        (tmp_path / fabric.STATE_FILE).unlink()
        assert isthmus("lab", "down", workdir=tmp_path).returncode == 1  # no state, no prefix: nothing to go by
        down = isthmus("lab", "down", "--prefix", prefix, workdir=tmp_path)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [n for n in list_netns() if n.startswith(prefix)]
    finally:
        fabric.down(tmp_path, prefix)
