"""A process held by a pidfd: once opened, `alive`, `signal` and `wait` refer to that very process, even if
it dies and its PID is given to another (the pidfd turns readable when the process exits, zombie or not:
this machine's init does not reap orphans promptly, so /proc/PID alone would call a dead daemon alive)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from pathlib import Path

from isthmus.linux.run import NETNS_DIR


class Process:
    def __init__(self, pid: int, fd: int, child: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._fd = fd
        self._child = child  # our own child: reaped here, so it never lingers as a zombie

    @classmethod
    def open(cls, pid: int) -> Process | None:
        """The process `pid` now, or None if there is none."""
        try:
            return cls(pid, os.pidfd_open(pid))
        except (ProcessLookupError, OSError):
            return None

    @classmethod
    def child(cls, popen: subprocess.Popen[bytes]) -> Process:
        """A child just started (it cannot have been reaped yet: only `wait` here reaps it)."""
        return cls(popen.pid, os.pidfd_open(popen.pid), popen)

    def alive(self) -> bool:
        if self._fd < 0:
            return False
        return not select.select([self._fd], [], [], 0)[0]

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the process to exit; True if it has."""
        if self._fd >= 0 and not select.select([self._fd], [], [], max(timeout, 0))[0]:
            return False
        if self._child is not None:
            self._child.poll()
        return True

    def returncode(self) -> int | None:
        """The exit status of our own child once it has exited (None if unknown or not a child)."""
        return None if self._child is None else self._child.poll()

    def signal(self, sig: signal.Signals) -> None:
        if self._fd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, sig)

    def cmdline(self) -> tuple[str, ...] | None:
        """argv as the process has it (None once it is gone; a zombie's is empty)."""
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return None
        command = tuple(raw.decode(errors="replace").split("\0")[:-1])
        return command if self.alive() else None  # read from this process, not from a successor with its PID

    def netns(self) -> tuple[int, int] | None:
        """The identity (device, inode) of the network namespace the process is in."""
        try:
            found = os.stat(f"/proc/{self.pid}/ns/net")
        except OSError:
            return None
        return (found.st_dev, found.st_ino) if self.alive() else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def netns_identity(netns: str | None) -> tuple[int, int]:
    """(device, inode) of a named network namespace, or of this process's own for None."""
    found = os.stat(f"{NETNS_DIR}/{netns}" if netns else "/proc/self/ns/net")
    return found.st_dev, found.st_ino
