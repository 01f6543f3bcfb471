"""Each connection's byte counters over the last minutes, for the dashboard's charts: kept in memory as the
gateways' reports arrive (api/nodes.py), nothing read back from the store."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

WINDOW_S = 360.0  # six minutes
SPACING_S = 2.0  # a report sooner than this after the last sample adds none (a status change reports at once)


@dataclass
class Throughput:
    """connection key -> (monotonic time, bytes in, bytes out) samples, oldest first, the last WINDOW_S seconds."""

    window: float = WINDOW_S
    spacing: float = SPACING_S
    samples: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pruned: float = 0.0

    def record(self, reports: Mapping[str, Mapping[str, Any]], now: float | None = None) -> None:
        """A sample of each connection in `reports` (a gateway's status report: key -> its fields)."""
        at = time.monotonic() if now is None else now
        with self._lock:
            for key, report in reports.items():
                held = self.samples.setdefault(key, deque())
                if held and at - held[-1][0] < self.spacing:
                    continue
                held.append((at, int(report.get("ingressBytesTransferred", 0)),
                             int(report.get("egressBytesTransferred", 0))))  # fmt: skip
                while held[0][0] < at - self.window:
                    held.popleft()
            if at - self._pruned > self.window:  # connections no longer reported (deleted, or their node gone)
                self._pruned = at
                for key in [k for k, held in self.samples.items() if held[-1][0] < at - self.window]:
                    del self.samples[key]

    def rates(self, key: str, now: float | None = None) -> list[tuple[float, float]]:
        """Bits per second in and out between consecutive samples of the window; a counter that went back (the
        connection moved to another node, which counts from zero) gives no rate for that interval."""
        since = (time.monotonic() if now is None else now) - self.window
        with self._lock:
            held = [sample for sample in self.samples.get(key, ()) if sample[0] >= since]
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
