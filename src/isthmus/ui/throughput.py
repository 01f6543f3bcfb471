"""Each connection's byte counters over the last minutes, sampled by the controller for the dashboard's
charts: the counters travel with the gateways' heartbeats (every 5 s), so a sample every 5 s is all there is."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

SAMPLE_SECONDS = 5.0
KEPT = 72  # six minutes of samples per connection


@dataclass
class Throughput:
    """connection key -> (monotonic time, bytes in, bytes out) samples, oldest first."""

    kept: int = KEPT
    samples: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)

    def record(self, reports: Mapping[str, Mapping[str, Any]], now: float | None = None) -> None:
        """One sample of every reported connection; a connection no longer reported is forgotten."""
        at = time.monotonic() if now is None else now
        for key in set(self.samples) - set(reports):
            del self.samples[key]
        for key, report in reports.items():
            held = self.samples.setdefault(key, deque(maxlen=self.kept))
            held.append(
                (at, int(report.get("ingressBytesTransferred", 0)), int(report.get("egressBytesTransferred", 0)))
            )

    def rates(self, key: str) -> list[tuple[float, float]]:
        """Bits per second in and out between consecutive samples; a counter that went back (the connection
        moved to another node, which counts from zero) gives no rate for that interval."""
        held = list(self.samples.get(key, ()))
        out = []
        for (t0, in0, out0), (t1, in1, out1) in pairwise(held):
            if t1 > t0 and in1 >= in0 and out1 >= out0:
                out.append(((in1 - in0) * 8 / (t1 - t0), (out1 - out0) * 8 / (t1 - t0)))
        return out


def sparkline(values: list[float], width: int = 120, height: int = 24) -> str:
    """SVG polyline points for `values` scaled into width x height (the highest value at the top)."""
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - v / top * (height - 2) - 1:.1f}" for i, v in enumerate(values))
