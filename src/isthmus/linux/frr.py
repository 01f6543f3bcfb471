"""FRR daemons in a namespace, each with its own config, pid file and sockets under one directory; vtysh
against that directory; the BFD profile every isthmus BFD session uses."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from isthmus.linux.supervisor import Daemon, Supervisor, socket_answers

FRR = Path("/usr/lib/frr")


def frr_daemon(netns: str | None, workdir: Path, daemon: str, config: str, extra: tuple[str, ...] = ()) -> Daemon:
    """One FRR daemon (e.g. "bfdd") in `netns`: config `workdir/DAEMON.conf`, pid file and sockets under
    `workdir/run` (shared by the daemons of one FRR: zebra's zserv.api, every vty for vtysh), `extra` options
    after those (bgpd's -Z). It daemonizes; ready and healthy when its vty socket accepts connections."""
    run = workdir / "run"
    command = [
        str(FRR / daemon), "-d", "-u", "frr", "-g", "frr", "-f", str(workdir / f"{daemon}.conf"),
        "-i", str(run / f"{daemon}.pid"), "-z", str(run / "zserv.api"), "--vty_socket", str(run), *extra,
    ]  # fmt: skip
    stale = [run / f"{daemon}.vty"]
    if daemon == "bfdd":
        command += ["--bfdctl", str(run / "bfdd.sock")]
        stale.append(run / "bfdd.sock")
    if daemon == "zebra":
        stale.append(run / "zserv.api")
    return Daemon(
        daemon, tuple(command), workdir, netns, configs={f"{daemon}.conf": config}, daemonizes=True,
        pid_file=run / f"{daemon}.pid", stale=tuple(stale), owner="frr",  # frr reads the configs, writes run/
        probe=functools.partial(socket_answers, run / f"{daemon}.vty"),
    )  # fmt: skip


def start_frr(netns: str | None, workdir: Path, configs: dict[str, str]) -> list[Supervisor]:
    """Start FRR daemons in `netns` in the order given (zebra first), each with its own config from
    `configs`; returns their supervisors (all stopped again if one fails to start)."""
    supervisors = [Supervisor(frr_daemon(netns, workdir, daemon, config)) for daemon, config in configs.items()]
    try:
        for supervisor in supervisors:
            supervisor.ensure()
    except BaseException:
        for supervisor in supervisors:
            supervisor.stop()
        raise
    return supervisors


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
