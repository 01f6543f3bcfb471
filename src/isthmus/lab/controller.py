"""Starting a controller as its own process (the demo, the lab, tests and benchmarks all do)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def controller_process(db: str, workdir: Path, *, start_timeout: float = 30.0) -> Iterator[RunningController]:
    """A controller serving HTTPS on a free loopback port, with a CA in `workdir/pki`; stopped on exit
    (its process group, by the PID recorded here)."""
    ca = pki.init(workdir / "pki", ("localhost", "127.0.0.1"))
    port = free_port()
    log_path = workdir / "controller.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "isthmus",
                "controller",
                "--db",
                db,
                "--port",
                str(port),
                "--tls-dir",
                str(workdir / "pki"),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while not _healthy(url, ca):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"controller did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield RunningController(url, ca, process.pid, log_path)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _healthy(url: str, ca: Path) -> bool:
    try:
        return httpx.get(f"{url}/healthz", verify=str(ca), timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
