"""Unions of boxes (one closed integer interval per dimension) as disjoint boxes. Pure.

The kernel's concatenated interval sets (nft "pipapo") refuse elements that overlap, while the rules of
an NSG overlap freely; a run of rules becomes one set only after its boxes are made disjoint. A sweep
along the first dimension splits it at every box edge; each slice covers the same boxes throughout, so
the rest is the union of those boxes' remaining dimensions, solved the same way; neighbouring slices
with the same remainder merge back together.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

Interval = tuple[int, int]
Box = tuple[Interval, ...]


def disjoint(boxes: Sequence[Box]) -> list[Box]:
    """Pairwise disjoint boxes covering exactly the union of `boxes` (all of one dimension count)."""
    if not boxes:
        return []
    return [tuple(box) for box in _split(list(boxes), 0, len(boxes[0]))]


# The union of each first-dimension slice, by the slice's boxes, across calls: an NSG edited in one rule
# changes the slices of that rule's sources only, and the others are looked up instead of solved again.
_SLICES: dict[tuple[Box, ...], tuple[Box, ...]] = {}
_SLICES_KEPT = 8192


def _slice(members: tuple[Box, ...], dims: int) -> tuple[Box, ...]:
    rest = _SLICES.get(members)
    if rest is None:
        if len(_SLICES) >= _SLICES_KEPT:
            _SLICES.clear()
        rest = _SLICES[members] = tuple(_split(list(members), 1, dims))
    return rest


def forget_slices() -> None:
    """Empty the slice memo (a benchmark's cold start)."""
    _SLICES.clear()


def _split(boxes: list[Box], dim: int, dims: int) -> list[Box]:
    """Disjoint boxes of dimensions dim.. covering the union of `boxes` there."""
    if dim == dims:
        return [()]
    # Shortcuts that give what the sweep below would, without its cost (a run's boxes mostly share their
    # destinations and source ports, and most source slices hold few boxes).
    if len(boxes) == 1:
        return [boxes[0][dim:]]
    if dim == dims - 1:
        return [(interval,) for interval in _union(b[dim] for b in boxes)]
    first = boxes[0][dim]
    if all(b[dim] == first for b in boxes):
        return [(first, *rest) for rest in _split(boxes, dim + 1, dims)]
    edges = sorted({b[dim][0] for b in boxes} | {b[dim][1] + 1 for b in boxes})
    starts: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        starts.setdefault(box[dim][0], []).append(index)
    active: set[int] = set()
    slices: list[tuple[int, int, tuple[Box, ...]]] = []
    memo: dict[frozenset[int], tuple[Box, ...]] = {}
    for low, next_edge in itertools.pairwise(edges):
        active.update(starts.get(low, ()))
        active = {i for i in active if boxes[i][dim][1] >= low}
        if not active:
            continue
        key = frozenset(active)
        rest = memo.get(key)
        if rest is None:
            members = tuple(boxes[i] for i in sorted(active))
            rest = memo[key] = _slice(members, dims) if dim == 0 else tuple(_split(list(members), dim + 1, dims))
        high = next_edge - 1
        if slices and slices[-1][1] + 1 == low and slices[-1][2] == rest:
            slices[-1] = (slices[-1][0], high, rest)
        else:
            slices.append((low, high, rest))
    return [((low, high), *tail) for low, high, rest in slices for tail in rest]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    """Intervals merged where they overlap or touch, in order."""
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged
