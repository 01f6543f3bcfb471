"""A throwaway PostgreSQL cluster: the store of a lab whose controller has replicas, and of the store's
portability tests. Debian's server binaries (the bootstrap installs them), run as the `postgres` user, on a
Unix socket only, without fsync: nothing in it outlives the lab."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from isthmus.lab.controller import free_port

DATABASE = "isthmus"


class PostgresMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Cluster:
    root: str  # the cluster's directory: data, sockets, log
    url: str

    @property
    def data(self) -> Path:
        return Path(self.root) / "data"


def _bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise PostgresMissing("PostgreSQL is not installed: scripts/bootstrap installs it")
    return Path(found[-1]).parent


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def _run(*args: str) -> None:
    done = subprocess.run(_as_postgres(*args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-1000:]}")


def start(prefix: str = "isthmus-pg-") -> Cluster:
    """A new cluster in a fresh directory under the system's temporary directory, started, with the database
    `isthmus` made; stop it with `stop`."""
    bin_dir = _bin()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    sockets = root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    cluster = Cluster(str(root), "")
    try:
        _run(str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        port = free_port()
        options = f"-c listen_addresses='' -c unix_socket_directories={sockets} -c port={port} -c fsync=off"
        _run(str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-o", options, "-w", "-l", str(root / "log"), "start")
        _run(str(bin_dir / "createdb"), "-h", str(sockets), "-p", str(port), DATABASE)
    except BaseException:
        stop(cluster)
        raise
    return Cluster(str(root), f"postgresql://postgres@/{DATABASE}?host={sockets}&port={port}")


def stop(cluster: Cluster) -> None:
    """Stop the cluster (immediately: its data is thrown away) and remove its directory."""
    if (cluster.data / "postmaster.pid").exists():
        subprocess.run(_as_postgres(str(_bin() / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w", "stop"),
                       capture_output=True, check=False)  # fmt: skip
    shutil.rmtree(cluster.root, ignore_errors=True)
