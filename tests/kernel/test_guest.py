"""boot_guest as a caller uses it: a script's output and exit code come back (qemu's own is always 0), the PID
is recorded while the guest runs and stopped by it, a missed deadline stops the guest and shows its console,
and what is missing is named with the step that installs it. Two guests at once, the most this tier allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.lab.kernel import guest as guests
from isthmus.lab.kernel.guest import GuestError, boot_guest
from isthmus.lab.kernel.image import KernelImage, KernelMissing, find
from isthmus.linux.process import Process
from isthmus.linux.run import ip_json
from tests.support import wait_for


def test_a_script_gives_its_output_and_exit_code_and_a_missed_deadline_stops_the_guest(
    kernel: KernelImage, tmp_path: Path, bridge_netns: str
) -> None:
    (tmp_path / "done" / "share").mkdir(parents=True)
    (tmp_path / "done" / "share" / "exit-code").write_text("0\n")  # a previous run's: must not be taken as this one's
    finished = boot_guest(
        "done", tmp_path / "done", command=["sh", "-c", "uname -r; hostname; cat /proc/cmdline; exit 3"]
    )
    tap = guests.Tap(f"ikg{finished.pid % 100000}", "br0", bridge_netns)
    sleeper = boot_guest("sleeper", tmp_path / "sleeper", script="sleep 600", taps=[tap])
    try:
        recorded = (tmp_path / "sleeper" / guests.PID_FILE).read_text().strip()
        assert recorded == str(sleeper.pid)
        (plugged,) = ip_json(bridge_netns, "link", "show", tap.ifname)
        assert plugged.get("master") == "br0", plugged

        result = finished.wait(timeout=120)
        assert result.exit_code == 3, result.output
        assert result.output.splitlines()[:2] == [kernel.version, "done"], result.output
        assert 0 < result.boot_seconds < 120
        assert not (tmp_path / "done" / guests.PID_FILE).exists()

        assert sleeper.wait_up(timeout=120) > 0
        with pytest.raises(GuestError, match=r"guest sleeper did not write exit-code within 1 s; its console ends"):
            sleeper.wait(timeout=1)
        assert not sleeper.alive()
        assert not (tmp_path / "sleeper" / guests.PID_FILE).exists()
        assert not ip_json(bridge_netns, "link", "show", "type", "tun"), "the tap outlived qemu"
    finally:
        finished.stop()
        sleeper.stop()


def test_stop_recorded_ends_only_the_qemu_recorded_in_its_workdir(kernel: KernelImage, tmp_path: Path) -> None:
    (tmp_path / guests.PID_FILE).write_text("1\n")  # a PID that is not this workdir's qemu
    assert guests.stop_recorded(tmp_path) is False
    assert Process.open(1) is not None
    started = boot_guest("stopped", tmp_path, script="sleep 600")
    assert guests.stop_recorded(tmp_path) is True
    wait_for(lambda: not started.alive(), timeout=10)


def test_missing_kernel_or_qemu_is_named_with_the_bootstrap_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KernelMissing, match=r"no prepared kernel in .* run scripts/bootstrap"):
        find(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KernelMissing, match=r"qemu-system-x86_64 is not installed: run scripts/bootstrap"):
        boot_guest("g", tmp_path / "g", command=["true"])
    assert not (tmp_path / "g").exists(), "nothing half-started"
    with pytest.raises(ValueError, match="exactly one of command and script"):
        boot_guest("g", tmp_path / "g", command=["true"], script="true")


def test_a_kernel_node_that_misses_its_deadline_is_reported_with_its_console_and_stopped(
    kernel: KernelImage, tmp_path: Path
) -> None:
    from isthmus.lab.fabric import LabError, wait_guest

    late = boot_guest("late", tmp_path, script="echo not-configuring-the-network; sleep 600")
    try:
        with pytest.raises(LabError, match=r"(?s)kernel node guest late did not write net-up within 8 s; its console"):
            wait_guest(late, timeout=8)
        assert not late.alive()
        assert not (tmp_path / guests.PID_FILE).exists()
    finally:
        late.stop()
