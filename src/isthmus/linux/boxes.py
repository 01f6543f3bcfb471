"""Unions of boxes (one closed integer interval per dimension) as disjoint boxes. Pure.

The kernel's concatenated interval sets (nft "pipapo") refuse elements that overlap, while the rules of
an NSG overlap freely; a run of rules becomes one set only after its boxes are made disjoint. A sweep
along the first dimension splits it at every box edge; each slice covers the same boxes throughout, so
the rest is the union of those boxes' remaining dimensions, solved the same way; neighbouring slices
with the same remainder merge back together.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

Interval = tuple[int, int]
Box = tuple[Interval, ...]


def disjoint(boxes: Sequence[Box]) -> list[Box]:
    """Pairwise disjoint boxes covering exactly the union of `boxes` (all of one dimension count)."""
    if not boxes:
        return []
    return [tuple(box) for box in _split(list(boxes), 0, len(boxes[0]))]


def _split(boxes: list[Box], dim: int, dims: int) -> list[Box]:
    if dim == dims:
        return [()]
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
            rest = memo[key] = tuple(_split([boxes[i] for i in sorted(active)], dim + 1, dims))
        high = next_edge - 1
        if slices and slices[-1][1] + 1 == low and slices[-1][2] == rest:
            slices[-1] = (slices[-1][0], high, rest)
        else:
            slices.append((low, high, rest))
    return [((low, high), *tail) for low, high, rest in slices for tail in rest]
