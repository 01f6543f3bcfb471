"""Starting a controller as its own process (the demo, the lab, tests and benchmarks all do)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from isthmus import pki


@dataclass(frozen=True)
class RunningController:
    url: str
    ca: Path
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_controller(
    db: str,
    workdir: Path,
    *,
    names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    extra: tuple[str, ...] = (),
    start_timeout: float = 30.0,
    port: int | None = None,
    log_name: str = "controller",
) -> RunningController:
    """A controller process serving HTTPS on a free loopback port (plus `extra` arguments), with a CA in
    `workdir/pki`; returns once it answers. Its own session, so `stop` can end its whole process group.
    Replicas of one store share `workdir` (its CA, certificate and secrets key), each with its `log_name`."""
    ca = pki.init(workdir / "pki", names)
    port = port or free_port()
    log_path = workdir / f"{log_name}.log"
    command = [sys.executable, "-m", "isthmus", "controller", "--db", db, "--port", str(port),
               "--tls-dir", str(workdir / "pki"), *extra]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    while not _healthy(url, ca):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process.pid)
            raise RuntimeError(f"controller did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    return RunningController(url, ca, process.pid, log_path)


def stop(pid: int, timeout: float = 10.0) -> None:
    """End the process group `pid` leads (a process this code started): TERM, then KILL after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by an earlier command): poll for it
            finished = 0 if _alive(pid) else pid
        if finished == pid:
            return
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@contextmanager
def controller_process(db: str, workdir: Path, *, start_timeout: float = 30.0) -> Iterator[RunningController]:
    """`start_controller`, stopped on exit."""
    running = start_controller(db, workdir, start_timeout=start_timeout)
    try:
        yield running
    finally:
        stop(running.pid)


def _healthy(url: str, ca: Path) -> bool:
    try:
        return httpx.get(f"{url}/healthz", verify=str(ca), timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
