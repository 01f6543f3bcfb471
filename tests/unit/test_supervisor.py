"""The supervisor's pure parts: what makes two instances interchangeable (the configuration digest), the
restart delays, and whether a recorded PID is adopted, replaced or left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.linux.supervisor import Backoff, Daemon, Decision, Record, adoption, config_digest

RUN = Path("/run/isthmus/sv-unit")
COMMAND = ("gobgpd", "--api-hosts", f"unix://{RUN}/gobgpd.sock")


def daemon(**changes: object) -> Daemon:
    fields: dict[str, object] = {"name": "gobgpd", "command": COMMAND, "run_dir": RUN,
                                 "configs": {"a.conf": "x\n", "b.conf": "y\n"}, "env": {"GOGC": "400"}}  # fmt: skip
    fields.update(changes)
    return Daemon(**fields)  # type: ignore[arg-type]


def test_digest_is_stable_and_ignores_order_and_probe() -> None:
    base = config_digest(daemon())
    assert base == config_digest(daemon(configs={"b.conf": "y\n", "a.conf": "x\n"}))
    assert base == config_digest(daemon(probe=lambda: True, start_timeout=1.0))  # how to watch it is not what runs
    assert len(base) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"configs": {"a.conf": "x\n", "b.conf": "z\n"}},
        {"configs": {"a.conf": "x\n"}},
        {"env": {"GOGC": "200"}},
        {"command": (*COMMAND, "-l", "warn")},
        {"netns": "sv-other"},
        {"private_run": True},
    ],
)
def test_digest_changes_with_what_runs(change: dict[str, object]) -> None:
    assert config_digest(daemon(**change)) != config_digest(daemon())


def test_a_daemonizing_daemon_names_its_pid_file() -> None:
    with pytest.raises(ValueError, match="pid_file"):
        daemon(daemonizes=True)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.2, factor=2.0, cap=1.5, reset_after=30.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 0.2, 0.4, 0.8, 1.5, 1.5]


def test_backoff_counts_consecutive_failures_and_resets_after_a_healthy_while() -> None:
    backoff = Backoff(reset_after=30.0)
    assert backoff.failures_after(0, None) == 1  # never became ready
    assert backoff.failures_after(3, None) == 4
    assert backoff.failures_after(3, 2.0) == 4  # died soon after it was ready: still a crash loop
    assert backoff.failures_after(3, 30.0) == 1  # was healthy a while: this one is a first failure again
    failures = 0
    for _ in range(10):  # a crash loop never spins: the delay only grows until the cap
        failures = backoff.failures_after(failures, 0.5)
    assert backoff.delay(failures) == backoff.cap


DIGEST = "d" * 64
RECORD = Record(COMMAND, DIGEST, 4242)
OLD = ("gobgpd", "--old")


@pytest.mark.parametrize(
    ("running", "same_netns", "recorded", "expected"),
    [
        (None, False, RECORD, Decision("start", "not running")),
        (COMMAND, True, RECORD, Decision("adopt", "same command line and configuration")),
        (COMMAND, True, Record(COMMAND, "e" * 64), Decision("replace", "its configuration changed")),
        (COMMAND, True, None, Decision("replace", "its configuration changed")),  # ours, but no digest to trust
        # what an earlier version of the agent started (the command line it recorded), not what we start now
        (OLD, True, Record(OLD, DIGEST), Decision("replace", "its command line changed")),
        # the PID was reused: never touched
        (("sleep", "60"), True, RECORD, Decision("start", "the recorded PID is another process now (sleep)")),
        (COMMAND, False, RECORD, Decision("start", f"the recorded PID is another process now ({COMMAND[0]})")),
        ((), True, RECORD, Decision("start", "the recorded PID is another process now (a zombie)")),
        (OLD, True, RECORD, Decision("start", "the recorded PID is another process now (gobgpd)")),
    ],
)
def test_adoption(
    running: tuple[str, ...] | None, same_netns: bool, recorded: Record | None, expected: Decision
) -> None:
    assert adoption(running, same_netns, recorded, COMMAND, DIGEST) == expected
