"""One supervisor for every external daemon (gobgpd, FRR, charon): start in its namespace with its own run
directory, wait until ready, adopt an instance an earlier agent left, probe health, restart with backoff,
stop by recorded PID (never by name).

    gobgpd = Supervisor(Daemon("gobgpd", ("gobgpd", "--api-hosts", api), run_dir, probe=speaker.ready))
    gobgpd.ensure()     # True if it had to start it (first start, restart after a death, new configuration)
    gobgpd.healthy()    # alive and answering its probe: the agents' cheap heartbeat check
    gobgpd.stop()       # SIGTERM, a bounded wait, SIGKILL; then its stale sockets and PID file go

Next to the daemon's own files the run directory holds NAME.supervisor.json (the command line, the
configuration's digest and, for a daemon that stays in the foreground, its PID) and NAME.log (its output).

An instance is ours if /proc/PID/cmdline is exactly the command line we start (or the one recorded when we
started it) and it sits in the daemon's network namespace. Ours with the recorded digest equal to the wanted
configuration's is adopted; ours otherwise is stopped and replaced; a PID that now belongs to anything else
is left alone. The PID is then held as a pidfd (linux/process.py), so a reused PID is never signalled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from isthmus.linux.process import Process, netns_identity
from isthmus.linux.run import in_netns

log = logging.getLogger("isthmus.supervisor")

Probe = Callable[[], bool]


class DaemonError(Exception):
    """A daemon did not start or did not become ready; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Daemon:
    """What to run and how to tell it is ours and ready."""

    name: str  # unique within run_dir: the supervisor's own files are named after it
    command: tuple[str, ...]  # argv inside the namespace, exactly as /proc/PID/cmdline will show it
    run_dir: Path  # its own directory: configs, the supervisor's record, its log (and sockets, by convention)
    netns: str | None = None  # None: the namespace the agent runs in
    configs: Mapping[str, str] = field(default_factory=dict)  # file name in run_dir -> text, written on start
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the agent's environment
    daemonizes: bool = False  # forks into the background and writes pid_file (FRR's -d); else stays ours
    pid_file: Path | None = None  # the one a daemonizing daemon writes (required then)
    stale: tuple[Path, ...] = ()  # files a killed instance leaves that stop a new one (sockets): removed first
    owner: str | None = None  # user that must own run_dir, pid_file's directory and the configs (FRR's frr)
    private_run: bool = False  # run_dir bound over /run in a mount namespace of its own (charon's fixed paths)
    probe: Probe | None = field(default=None, compare=False)  # readiness and health: True when it answers
    start_timeout: float = 10.0  # launch to ready
    stop_timeout: float = 5.0  # SIGTERM to exit, then SIGKILL
    hang_timeout: float = 5.0  # a live instance failing its probe this long is replaced

    def __post_init__(self) -> None:
        if self.daemonizes and self.pid_file is None:
            raise ValueError(f"{self.name}: a daemonizing daemon needs the pid_file it writes")

    @property
    def record_path(self) -> Path:
        return self.run_dir / f"{self.name}.supervisor.json"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"


def config_digest(daemon: Daemon) -> str:
    """What makes two instances interchangeable: command line, namespace, environment and config files."""
    material = {
        "command": list(daemon.command),
        "netns": daemon.netns,
        "private_run": daemon.private_run,
        "env": dict(daemon.env),
        "configs": dict(daemon.configs),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Backoff:
    """Restart delays: initial, x factor per consecutive failure, at most cap; an instance that stayed up
    reset_after seconds starts the count again."""

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 10.0
    reset_after: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds between noticing the failure and the next start, after `failures` consecutive ones."""
        if failures <= 0:
            return 0.0
        return float(min(self.cap, self.initial * self.factor ** (failures - 1)))

    def failures_after(self, failures: int, uptime: float | None) -> int:
        """The consecutive failures once an instance that was ready for `uptime` seconds (None: never) failed."""
        return 1 if uptime is not None and uptime >= self.reset_after else failures + 1


@dataclass(frozen=True)
class Record:
    """What the supervisor wrote when it started an instance."""

    command: tuple[str, ...]
    digest: str
    pid: int | None = None  # for foreground daemons (a daemonizing one has its own pid file)


@dataclass(frozen=True)
class Decision:
    action: Literal["adopt", "replace", "start"]
    reason: str


def adoption(
    running: tuple[str, ...] | None, same_netns: bool, recorded: Record | None, command: tuple[str, ...], digest: str
) -> Decision:
    """What to do with the process the recorded PID names: `running` is its command line (None: no such
    process), `same_netns` whether it is in the daemon's namespace, `command` and `digest` what we want."""
    if running is None:
        return Decision("start", "not running")
    ours = same_netns and (running == command or (recorded is not None and running == recorded.command))
    if not ours:
        what = running[0] if running else "a zombie"
        return Decision("start", f"the recorded PID is another process now ({what})")
    if running != command:
        return Decision("replace", "its command line changed")
    if recorded is None or recorded.digest != digest:
        return Decision("replace", "its configuration changed")
    return Decision("adopt", "same command line and configuration")


@dataclass(frozen=True)
class DaemonState:
    """What an agent reports about one daemon."""

    name: str
    pid: int | None
    alive: bool
    restarts: int  # instances found dead (or hung) and started again by this supervisor
    failures: int  # consecutive ones: the backoff's count
    retry_in: float  # seconds until a restart is allowed (0: now)
    uptime: float | None  # seconds since it was ready (or adopted); None while down
    reason: str  # why the last start, adoption or replacement happened


class Supervisor:
    """Owns one daemon: agents ask it for a state and never handle its PID themselves. `ensure` and `stop`
    come from one thread at a time (the agent's pass); `alive`, `healthy` and `state` from any thread (the
    heartbeat): they only look, never wait on a start or a stop in progress."""

    def __init__(self, daemon: Daemon | None = None, *, backoff: Backoff | None = None) -> None:
        self.daemon = daemon  # None until the agent knows what to run (e.g. bfdd before its first document)
        self.backoff = backoff or Backoff()
        self.restarts = 0
        self.failures = 0
        self.reason = ""
        self._process: Process | None = None  # replaced and closed under _lock: other threads look at it
        self._lock = threading.Lock()
        self._digest: str | None = None  # the running instance's configuration
        self._ready_at: float | None = None
        self._retry_at = 0.0
        self._restart_due = False  # the next start follows a death: counted in restarts
        self._looked = False  # the run directory was searched for an instance to adopt

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ensure(self, daemon: Daemon | None = None, *, probe: bool = True, wait: bool = True) -> bool:
        """Make `daemon` (or the one given before) run: adopt it, keep it, or (re)start it; True if started.
        A new `daemon` may change what runs (command, configs, environment), not its name or run directory.
        With probe, a live instance must also answer its probe (a hung one is replaced). A restart waits
        out the backoff: sleeping, or with wait=False returning False at once (see `state().retry_in`)."""
        if daemon is not None:
            if self.daemon is not None and (daemon.name, daemon.run_dir) != (self.daemon.name, self.daemon.run_dir):
                raise ValueError(f"{self.daemon.name} in {self.daemon.run_dir}: one supervisor, one daemon")
            self.daemon = daemon
        spec = self._spec()
        digest = config_digest(spec)
        if not self._looked:
            self._find(spec, digest, replace=True)
        if self._running():
            if self._digest != digest:
                log.info("%s (pid %s): configuration changed; restarting it", spec.name, self.pid)
                self.reason = "its configuration changed"
                self._terminate(spec)
            elif not probe or spec.probe is None or self._answers(spec):
                return False
            elif self._process is not None:  # (a death while probing is already counted)
                log.warning("%s (pid %s) does not answer; replacing it", spec.name, self.pid)
                self._terminate(spec)
                self._failed("hung")
        pause = self._retry_at - time.monotonic()
        if pause > 0:
            if not wait:
                return False
            time.sleep(pause)
        self._start(spec, digest)
        return True

    def alive(self) -> bool:
        """The instance runs (before the first `ensure`: an instance `ensure` would adopt runs)."""
        spec = self.daemon
        if spec is None:
            return False
        with self._lock:
            if self._process is not None:
                return self._process.alive()
            if self._looked:
                return False
        decision, process, _ = self._lookup(spec, config_digest(spec))
        if process is not None:
            process.close()
        return decision.action == "adopt"

    def healthy(self) -> bool:
        """Alive and answering its probe (one try: the agent's heartbeat; `ensure` gives it hang_timeout)."""
        return self.alive() and (self.daemon is None or self.daemon.probe is None or _probe(self.daemon.probe))

    def stop(self) -> None:
        """Stop our instance by its PID (SIGTERM, stop_timeout, SIGKILL) and remove what it left behind."""
        if self.daemon is None:
            return
        spec = self.daemon
        if not self._looked and self._process is None:
            decision, process, _ = self._lookup(spec, config_digest(spec))
            if decision.action == "start":
                if process is not None:
                    process.close()
            else:
                self._hold(process)
        self._looked = True
        self._terminate(spec)
        self._ready_at, self._restart_due, self._retry_at = None, False, 0.0

    def state(self) -> DaemonState:
        name = self.daemon.name if self.daemon else ""
        alive, now = self.alive(), time.monotonic()
        retry_in = 0.0 if alive else max(0.0, self._retry_at - now)
        uptime = now - self._ready_at if alive and self._ready_at is not None else None
        return DaemonState(name, self.pid, alive, self.restarts, self.failures, round(retry_in, 3), uptime, self.reason)

    # --- internals -------------------------------------------------------------------------------------

    def _spec(self) -> Daemon:
        if self.daemon is None:
            raise ValueError("no daemon given to this supervisor yet")
        return self.daemon

    def _hold(self, process: Process | None) -> None:
        with self._lock:
            self._process = process

    def _release(self) -> Process | None:
        """The instance, no longer visible to other threads (the caller stops or closes it)."""
        with self._lock:
            process, self._process = self._process, None
        return process

    def _running(self) -> bool:
        """Whether the instance lives; notices a death (once) for the restart count and the backoff."""
        with self._lock:
            if self._process is None or self._process.alive():
                return self._process is not None
        process = self._release()
        assert process is not None
        process.wait(0)
        code = process.returncode()
        log.warning("%s (pid %d) exited%s", self._spec().name, process.pid, "" if code is None else f" with {code}")
        process.close()
        self._failed("exited" if code is None else f"exited with {code}")
        return False

    def _failed(self, why: str) -> None:
        now = time.monotonic()
        uptime = None if self._ready_at is None else now - self._ready_at
        self.failures = self.backoff.failures_after(self.failures, uptime)
        self._retry_at = now + self.backoff.delay(self.failures)
        self._ready_at = None
        self._restart_due = True
        self.reason = why

    def _answers(self, spec: Daemon) -> bool:
        """The probe answers within hang_timeout (a busy daemon gets some slack before it is called hung)."""
        assert spec.probe is not None
        deadline = time.monotonic() + spec.hang_timeout
        while not _probe(spec.probe):
            if time.monotonic() > deadline or not self._running():
                return False
            time.sleep(0.1)
        return True

    def _lookup(self, spec: Daemon, digest: str) -> tuple[Decision, Process | None, Record | None]:
        record = _read_record(spec.record_path)
        pid = _read_pid(spec.pid_file) if spec.daemonizes and spec.pid_file else (record.pid if record else None)
        process = Process.open(pid) if pid else None
        running = process.cmdline() if process is not None else None
        try:
            same_netns = process is not None and process.netns() == netns_identity(spec.netns)
        except OSError:  # the daemon's namespace is gone: nothing in it can be ours
            same_netns = False
        return adoption(running, same_netns, record, spec.command, digest), process, record

    def _find(self, spec: Daemon, digest: str, *, replace: bool) -> None:
        """Adopt the instance an earlier agent left if it is ours and current; with replace, stop it if it
        is ours but not current. Without replace a stale instance is left for `ensure` to deal with."""
        decision, process, record = self._lookup(spec, digest)
        if decision.action == "adopt" and process is not None and record is not None:
            log.info("%s: adopted pid %d (%s)", spec.name, process.pid, decision.reason)
            self._hold(process)
            self._digest, self._ready_at = record.digest, time.monotonic()
        elif decision.action == "replace" and process is not None:
            if not replace:
                process.close()
                return
            log.info("%s: stopping pid %d: %s", spec.name, process.pid, decision.reason)
            self._hold(process)
            self._terminate(spec)
        elif process is not None:
            process.close()
        self.reason = decision.reason
        self._looked = True

    def _start(self, spec: Daemon, digest: str) -> None:
        if self._restart_due:
            self.restarts += 1
            self._restart_due = False
        self._prepare(spec)
        started = time.monotonic()
        try:
            self._hold(self._launch(spec))
            self._digest = digest
            _write_record(spec.record_path, Record(spec.command, digest, None if spec.daemonizes else self.pid))
            self._wait_ready(spec, started + spec.start_timeout)
        except BaseException as error:
            self._terminate(spec)
            self._failed(f"start failed: {error}")
            raise
        log.info("%s: started pid %s", spec.name, self.pid)

    def _prepare(self, spec: Daemon) -> None:
        spec.run_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        directories = [spec.run_dir] + ([spec.pid_file.parent] if spec.pid_file else [])
        for directory in directories:
            directory.mkdir(parents=True, exist_ok=True)
            if spec.owner:
                shutil.chown(directory, spec.owner, spec.owner)
        _remove_leftovers(spec)
        for name, text in spec.configs.items():
            path = spec.run_dir / name
            path.write_text(text)
            if spec.owner:
                shutil.chown(path, spec.owner, spec.owner)

    def _launch(self, spec: Daemon) -> Process:
        command = list(spec.command)
        if spec.private_run:  # inside, /run is run_dir: fixed paths like /run/charon.pid stay per instance
            bind = 'mount --bind "$0" /run && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", bind, str(spec.run_dir), *command]
        argv = in_netns(spec.netns, command)  # nsenter, unshare and sh exec: the PID is the daemon's
        env = {**os.environ, **spec.env}
        with open(spec.log_path, "ab") as output:
            if not spec.daemonizes:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env,
                                         start_new_session=True)  # fmt: skip
                return Process.child(popen)
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env,
                                  timeout=spec.start_timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            raise DaemonError(f"{spec.name} did not start (exit {done.returncode}): {_tail(spec.log_path)}")
        assert spec.pid_file is not None
        deadline = time.monotonic() + spec.start_timeout
        while (pid := _read_pid(spec.pid_file)) is None:
            if time.monotonic() > deadline:
                raise DaemonError(f"{spec.name} wrote no {spec.pid_file}: {_tail(spec.log_path)}")
            time.sleep(0.02)
        process = Process.open(pid)
        if process is None or process.cmdline() != spec.command:
            raise DaemonError(f"{spec.name}: pid {pid} of {spec.pid_file} is not the daemon just started")
        return process

    def _wait_ready(self, spec: Daemon, deadline: float) -> None:
        process = self._process
        assert process is not None
        while spec.probe is not None and not _probe(spec.probe):
            if not process.alive():
                code = process.returncode()
                raise DaemonError(f"{spec.name} exited{'' if code is None else f' with {code}'} while starting: "
                                  f"{_tail(spec.log_path)}")  # fmt: skip
            if time.monotonic() > deadline:
                raise DaemonError(f"{spec.name} not ready within {spec.start_timeout:.0f} s: {_tail(spec.log_path)}")
            time.sleep(0.02)
        self._ready_at = time.monotonic()

    def _terminate(self, spec: Daemon) -> None:
        process, self._digest = self._release(), None
        if process is not None:
            process.signal(signal.SIGTERM)
            if not process.wait(spec.stop_timeout):
                log.warning("%s (pid %d) still runs %.0f s after SIGTERM; killing it", spec.name, process.pid,
                            spec.stop_timeout)  # fmt: skip
                process.signal(signal.SIGKILL)
                process.wait(spec.stop_timeout)
            process.close()
        _remove_leftovers(spec)


def _probe(probe: Probe) -> bool:
    try:
        return bool(probe())
    except Exception:  # a probe that raises says "not answering", whatever the daemon's client library raises
        return False


def socket_answers(path: Path, timeout: float = 1.0) -> bool:
    """A probe: something accepts connections on the unix stream socket `path` (e.g. an FRR vty)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _remove_leftovers(spec: Daemon) -> None:
    """What an instance that is no more leaves behind: sockets that stop the next one, PID file, record."""
    for path in (*spec.stale, *([spec.pid_file] if spec.pid_file else []), spec.record_path):
        path.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_record(path: Path) -> Record | None:
    try:
        data = json.loads(path.read_text())
        return Record(tuple(data["command"]), str(data["digest"]), data.get("pid"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(path: Path, record: Record) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"command": list(record.command), "digest": record.digest, "pid": record.pid}))
    os.replace(partial, path)


def _tail(path: Path, size: int = 1500) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - size))
        return handle.read().decode(errors="replace").strip() or "(no output)"
    return "(no log)"
