"""Running iproute2, bridge, nft and sysctl: one process per batch, errors with the tool's own message."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from isthmus.linux import libnft

NETNS_DIR = "/run/netns"


class LinuxError(Exception):
    """A command failed; the message is what the tool printed."""


def run(args: Sequence[str], stdin: str | None = None, *, check: bool = True) -> str:
    process = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if check and process.returncode != 0:
        raise LinuxError(f"{' '.join(args[:6])}: {(process.stderr or process.stdout).strip()[:1500]}")
    return process.stdout


def in_netns(netns: str | None, args: Sequence[str]) -> list[str]:
    """`args` run inside `netns` (network namespace only: mounts stay the caller's)."""
    if netns is None:
        return list(args)
    return ["nsenter", f"--net={NETNS_DIR}/{netns}", *args]


def ip_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    out = run(["ip", *(("-n", netns) if netns else ()), "-j", *args])
    return list(json.loads(out)) if out.strip() else []


def ip_batch(netns: str | None, lines: Iterable[str]) -> None:
    """Apply iproute2 commands in one process; stops at the first that fails."""
    text = "\n".join(lines)
    if text:
        run(["ip", *(("-n", netns) if netns else ()), "-batch", "-"], stdin=text + "\n")


def bridge_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    out = run(["bridge", *(("-n", netns) if netns else ()), "-j", *args])
    return list(json.loads(out)) if out.strip() else []


def bridge_batch(netns: str | None, lines: Iterable[str]) -> None:
    text = "\n".join(lines)
    if text:
        run(["bridge", *(("-n", netns) if netns else ()), "-batch", "-"], stdin=text + "\n")


def sysctl(netns: str | None, settings: dict[str, str]) -> None:
    if settings:
        run(in_netns(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]))


def list_netns() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])
    ip_batch(name, ["link set lo up"])


def delete_netns(name: str) -> None:
    libnft.close(f"{NETNS_DIR}/{name}")  # its open nft context would keep the namespace alive
    run(["ip", "netns", "delete", name], check=False)


def netns_pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit()]
