"""Pure helpers of the events page: filtering the timeline, and a failover told as one story."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# What starts a story: a gateway's lease ended (unplanned), the operator's failover drill or a drain (planned).
STARTS = {"lease.lost": "failover", "placement.failover": "failover drill", "drain.started": "drain"}
# What belongs to one once it started: the planner's answer, the moved connections coming back, the node fencing
# and rejoining, a drain's own steps.
STEPS = ("placement.role", "placement.moved", "connections.", "gateway.fenced", "lease.acquired", "drain.")
STORY_SECONDS = 30.0
_WORD = re.compile(r"[\s:,;()]+")  # a step later than this after the start is not part of the story


def mentions(event: dict[str, Any], needle: str) -> bool:
    """Whether an event names `needle` (a node, a gateway, a VNet gateway id), case-insensitively."""
    needle = needle.lower()
    details = event.get("details") or {}
    fields = (
        event.get("subject", ""),
        *(str(details.get(k, "")) for k in ("node", "gateway", "virtualNetworkGateway")),
    )
    return any(needle == value.lower() or value.lower().endswith("/" + needle) for value in fields if value) or (
        f" {needle} " in f" {event.get('message', '').lower()} "
    )


def matching(events: Iterable[dict[str, Any]], needles: Sequence[str]) -> list[dict[str, Any]]:
    """The events that name any of `needles` (all of them when there is none)."""
    return [e for e in events if not needles or any(mentions(e, n) for n in needles)]


@dataclass
class Step:
    event: dict[str, Any]
    after_start_ms: int
    after_previous_ms: int


@dataclass
class Story:
    title: str
    start: dict[str, Any]
    steps: list[Step] = field(default_factory=list)

    @property
    def total_ms(self) -> int:
        return self.steps[-1].after_start_ms if self.steps else 0

    @property
    def silent_ms(self) -> int | None:
        """How long the gateway had been silent when its lease ended (the failure began that long before)."""
        silent = (self.start.get("details") or {}).get("silentMs")
        return int(silent) if silent is not None else None


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"])


def stories(events: Sequence[dict[str, Any]]) -> list[Story]:
    """Each failover or drain in `events` (oldest first) with the steps that followed it: who became active, what
    moved, each moved connection connected again, the failed node fencing itself. A step belongs to the latest
    story begun at most STORY_SECONDS before it."""
    told: list[Story] = []
    for event in events:
        kind = event["kind"]
        if kind in STARTS:
            who = (event.get("details") or {}).get("gateway") or event.get("subject", "").rsplit("/", 1)[-1]
            told.append(Story(f"{STARTS[kind]} of {who}", event))
            continue
        if not told or not kind.startswith(STEPS):
            continue
        story = told[-1]
        since_start = (_at(event) - _at(story.start)).total_seconds()
        if since_start > STORY_SECONDS:
            continue
        previous = story.steps[-1].event if story.steps else story.start
        story.steps.append(
            Step(event, round(since_start * 1000), round((_at(event) - _at(previous)).total_seconds() * 1000))
        )
    return told
