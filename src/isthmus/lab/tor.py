"""The top-of-rack router: FRR (zebra, staticd, bgpd) in the ToR namespace. It learns every public IP as a
/32 from the MUXes over eBGP (ECMP across them) and sends everything else towards the internet host."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from isthmus.lab.topology import INTERNET_HOST, MUX_ASN, TOR_ASN, TOR_UNDERLAY
from isthmus.linux.run import in_netns

FRR = Path("/usr/lib/frr")


def run_dir(netns: str) -> Path:
    """Where the ToR's FRR files live: readable by the frr user (a pytest tmp dir is not)."""
    return Path("/run/isthmus") / netns


def start_tor(netns: str, workdir: Path, mux_addresses: list[str]) -> list[int]:
    """The ToR's FRR: eBGP to every MUX (ECMP across them), a default route towards the internet host.
    Returns the daemons' PIDs."""
    neighbours = "\n".join(
        f" neighbor {address} remote-as {MUX_ASN}\n neighbor {address} timers 1 3\n neighbor {address} timers connect 1"
        for address in mux_addresses
    )
    bgpd = (
        f"hostname tor\nrouter bgp {TOR_ASN}\n bgp router-id {TOR_UNDERLAY}\n no bgp ebgp-requires-policy\n"
        f"{neighbours}\n address-family ipv4 unicast\n  maximum-paths 16\n exit-address-family\n"
    )
    staticd = f"hostname tor\nip route 0.0.0.0/0 {INTERNET_HOST}\n"
    return start_frr(netns, workdir, {"zebra": "hostname tor\n", "staticd": staticd, "bgpd": bgpd})


def start_frr(netns: str, workdir: Path, configs: dict[str, str]) -> list[int]:
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


def vtysh(workdir: Path, command: str) -> str:
    out = subprocess.run(
        ["vtysh", "--vty_socket", str(workdir / "run"), "-c", command], capture_output=True, text=True, check=False
    )
    return out.stdout


def established(workdir: Path) -> dict[str, bool]:
    """BGP neighbour -> Established?, as the ToR's bgpd reports it."""
    out = vtysh(workdir, "show bgp summary json")
    try:
        peers = json.loads(out).get("ipv4Unicast", {}).get("peers", {})
    except ValueError:
        return {}
    return {address: peer.get("state") == "Established" for address, peer in peers.items()}
