"""Faults the lab injects on a node's link, two kinds:

  - a *dead* link, `silence(netns, device)` / `unsilence(netns)`: nft drops everything (no carrier loss, no
    FIN or RST), in both directions, for traffic the node forwards as well as its own (BGP, BFD);
  - a *dead node*, `kill_node(netns)`: SIGKILL to every process of a node's namespace and of the namespaces
    named after it (a gateway's compartments: agent, watchdog, charons), by the PIDs the kernel lists there;
  - a *bad* link, `degrade(netns, device, delay_ms=, jitter_ms=, loss_percent=, reorder_percent=,
    duplicate_percent=)` / `restore(netns, device)`: the device's root qdisc becomes netem (`tc qdisc replace
    dev D root netem ...`), which acts on what the device *sends*: degrade both ends for a link that is bad
    both ways (a delay of 100 ms on each end: a round trip of 200 ms more).

netem is a kernel module (sch_netem): a node whose kernel lacks it refuses `degrade` with FaultUnavailable,
having changed nothing; the kernel nodes of the lab's real-kernel tier (qemu guests on Debian's kernel) have
it. The functions only run nft and tc in a namespace, so they work the same inside a guest.
"""

from __future__ import annotations

import json
import os
import signal

from isthmus.linux.run import LinuxError, in_netns, list_netns, netns_pids, run

TABLE = "isthmus_silent"
NETEM_MISSING = "Specified qdisc kind is unknown"  # tc's message when the kernel cannot load the qdisc


class FaultUnavailable(LinuxError):
    """The node's kernel cannot inject this fault (nothing was changed)."""


def kill_node(netns: str) -> list[int]:
    """SIGKILL every process in namespace `netns` and in those named `netns-…` (its compartments); their PIDs."""
    killed = []
    for name in [netns, *sorted(n for n in list_netns() if n.startswith(f"{netns}-"))]:
        for pid in netns_pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def silence(netns: str, device: str) -> None:
    rules = (
        f"table inet {TABLE} {{\n"
        f' chain in {{ type filter hook prerouting priority -500; policy accept; iifname "{device}" drop; }}\n'
        f' chain out {{ type filter hook postrouting priority -500; policy accept; oifname "{device}" drop; }}\n'
        "}\n"
    )
    run(in_netns(netns, ["nft", "-f", "-"]), stdin=rules)


def unsilence(netns: str) -> None:
    run(in_netns(netns, ["nft", "delete", "table", "inet", TABLE]))


def _number(value: float) -> str:
    return f"{value:g}"


def netem_command(
    device: str,
    *,
    delay_ms: float = 0,
    jitter_ms: float = 0,
    loss_percent: float = 0,
    reorder_percent: float = 0,
    duplicate_percent: float = 0,
) -> list[str]:
    """The tc argv making netem `device`'s root qdisc; ValueError for arguments netem would refuse or ignore."""
    if not device:
        raise ValueError("degrade needs a device")
    for name, value in (("delay_ms", delay_ms), ("jitter_ms", jitter_ms)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60_000:
            raise ValueError(f"{name} must be a number of milliseconds from 0 to 60000, not {value!r}")
    percents = (("loss_percent", loss_percent), ("reorder_percent", reorder_percent))
    for name, value in (*percents, ("duplicate_percent", duplicate_percent)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"{name} must be a percentage from 0 to 100, not {value!r}")
    if jitter_ms and not delay_ms:
        raise ValueError("jitter_ms needs a delay_ms: jitter varies the delay")
    if jitter_ms > delay_ms:
        raise ValueError(f"jitter_ms ({_number(jitter_ms)}) must not exceed delay_ms ({_number(delay_ms)})")
    if reorder_percent and not delay_ms:
        raise ValueError("reorder_percent needs a delay_ms: netem reorders by sending some packets undelayed")
    if not (delay_ms or loss_percent or duplicate_percent):
        raise ValueError("nothing to degrade: give a delay_ms, loss_percent or duplicate_percent (restore undoes)")
    options: list[str] = []
    if delay_ms:
        options += ["delay", f"{_number(delay_ms)}ms"]
        if jitter_ms:
            options.append(f"{_number(jitter_ms)}ms")
    if loss_percent:
        options += ["loss", f"{_number(loss_percent)}%"]
    if reorder_percent:
        options += ["reorder", f"{_number(reorder_percent)}%"]
    if duplicate_percent:
        options += ["duplicate", f"{_number(duplicate_percent)}%"]
    return ["tc", "qdisc", "replace", "dev", device, "root", "netem", *options]


def netem_unavailable(netns: str | None) -> FaultUnavailable:
    node = f"node {netns}" if netns else "this host"
    return FaultUnavailable(
        f"netem is not available on {node}: its kernel ({os.uname().release}) has no sch_netem qdisc, so the "
        "link cannot be degraded (nothing was changed); the kernel nodes of the lab's real-kernel tier "
        "(qemu guests on Debian's kernel) have it"
    )


def degrade(netns: str | None, device: str, **netem: float) -> None:
    """Make what `device` sends late, lost, reordered or duplicated (replacing an earlier degrade); `netem` are
    netem_command's options (delay_ms, jitter_ms, loss_percent, reorder_percent, duplicate_percent)."""
    command = netem_command(device, **netem)
    try:
        run(in_netns(netns, command))
    except LinuxError as error:
        if NETEM_MISSING in str(error):
            raise netem_unavailable(netns) from error
        raise


def root_qdisc_kind(tc_json: str) -> str | None:
    """The kind of the root qdisc in `tc -j qdisc show dev D root`'s output."""
    qdiscs = json.loads(tc_json) if tc_json.strip() else []
    return next((str(q.get("kind")) for q in qdiscs if q.get("root")), None)


def restore(netns: str | None, device: str) -> None:
    """Undo `degrade`: `device` gets its default qdisc back. Nothing to do if it is not degraded."""
    shown = run(in_netns(netns, ["tc", "-j", "qdisc", "show", "dev", device, "root"]))
    if root_qdisc_kind(shown) == "netem":
        run(in_netns(netns, ["tc", "qdisc", "del", "dev", device, "root"]))
