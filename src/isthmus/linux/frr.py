"""FRR daemons in a namespace, each with its own config, pid file and sockets under one directory; vtysh
against that directory; the BFD profile every isthmus BFD session uses."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from isthmus.linux.run import in_netns

FRR = Path("/usr/lib/frr")


def start_frr(netns: str | None, workdir: Path, configs: dict[str, str]) -> list[int]:
    """Start FRR daemons (zebra first) in `netns`, each with its own config from `configs`, their sockets
    and pid files under `workdir/run`; returns their PIDs."""
    workdir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(workdir, "frr", "frr")
    shutil.chown(run_dir, "frr", "frr")  # frr reads the configs and writes run/
    pids = []
    for daemon, config in configs.items():
        path = workdir / f"{daemon}.conf"
        path.write_text(config)
        shutil.chown(path, "frr", "frr")
        pid_file = run_dir / f"{daemon}.pid"
        command = [
            str(FRR / daemon), "-d", "-u", "frr", "-g", "frr", "-f", str(path),
            "-i", str(pid_file), "-z", str(run_dir / "zserv.api"), "--vty_socket", str(run_dir),
        ]  # fmt: skip
        if daemon == "bfdd":
            command += ["--bfdctl", str(run_dir / "bfdd.sock")]
        started = subprocess.run(in_netns(netns, command), capture_output=True, text=True, check=False)
        if started.returncode != 0:
            raise RuntimeError(f"{daemon} did not start: {(started.stderr or started.stdout).strip()[:500]}")
        pids.append(_wait_pid(pid_file))
    return pids


def _wait_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip().isdigit():
            return int(path.read_text().strip())
        time.sleep(0.05)
    raise RuntimeError(f"{path.name}: the daemon did not start")


def vtysh(workdir: Path, *commands: str) -> str:
    """Run vtysh commands in one session (e.g. "configure", "router bgp 65000", "no neighbor ... bfd")."""
    args = [arg for command in commands for arg in ("-c", command)]
    out = subprocess.run(["vtysh", "--vty_socket", str(workdir / "run"), *args], capture_output=True, text=True,
                         check=False)  # fmt: skip
    return out.stdout


BFD_PROFILE = "fast"


def bfd_profile(interval_ms: int = 100, multiplier: int = 3) -> str:
    """FRR bfdd's profile both ends use: a dead MUX leaves the ToR's ECMP set in interval x multiplier."""
    return (
        f"bfd\n profile {BFD_PROFILE}\n  receive-interval {interval_ms}\n  transmit-interval {interval_ms}\n"
        f"  detect-multiplier {multiplier}\n !\n"
    )
