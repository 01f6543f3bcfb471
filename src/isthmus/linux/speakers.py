"""The MUX's BGP speaker by name: the speaker object and the daemon its supervisor runs."""

from __future__ import annotations

from pathlib import Path

from isthmus.linux.bird import BirdSpeaker, bird_daemon
from isthmus.linux.gobgp import GobgpSpeaker, gobgpd_api, gobgpd_daemon
from isthmus.linux.speaker import SPEAKERS, Speaker
from isthmus.linux.supervisor import Daemon


def mux_speaker(kind: str, run_dir: Path, netns: str | None = None) -> tuple[Speaker, Daemon]:
    """`kind` ("bird" or "gobgp") with its files under `run_dir`, in `netns` (None: this process's)."""
    if kind == "bird":
        bird = BirdSpeaker(run_dir / "bird", netns)
        return bird, bird_daemon(run_dir / "bird", netns, probe=bird.ready)
    if kind == "gobgp":
        gobgp = GobgpSpeaker(gobgpd_api(run_dir))
        return gobgp, gobgpd_daemon(run_dir, netns, probe=gobgp.ready)
    raise ValueError(f"unknown speaker {kind!r}: one of {', '.join(SPEAKERS)}")
