"""The closing lines every benchmark prints: its table against the targets, then its figures as one JSON object."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Row = tuple[str, str, str, bool | None]  # measure, value, target, met (None: no target)


def finish(
    title: str, rows: Sequence[Row], figures: dict[str, Any], widths: tuple[int, int, int] = (50, 10, 8)
) -> None:
    """Print `rows` under `title`, then `figures` with `targets_met` as the last line."""
    name_w, value_w, target_w = widths
    print(title)
    print(f"{'measure':<{name_w}} {'value':>{value_w}}  {'target':<{target_w}} met")
    for name, value, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<{name_w}} {value:>{value_w}}  {target:<{target_w}} {verdict}")
    figures["targets_met"] = all(met for *_rest, met in rows if met is not None)
    print(json.dumps(figures))
