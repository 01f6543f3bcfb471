"""Disjoint boxes cover exactly what the overlapping ones did, and never overlap each other."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.linux.boxes import Box, disjoint

interval = st.tuples(st.integers(0, 9), st.integers(0, 9)).map(lambda p: (min(p), max(p)))


def points(boxes: list[Box], dims: int) -> set[tuple[int, ...]]:
    return {p for p in itertools.product(range(10), repeat=dims)
            if any(all(lo <= v <= hi for v, (lo, hi) in zip(p, box, strict=True)) for box in boxes)}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3).flatmap(lambda d: st.lists(st.tuples(*[interval] * d), max_size=7)))
def test_same_points_no_overlap(boxes: list[Box]) -> None:
    if not boxes:
        assert disjoint(boxes) == []
        return
    dims = len(boxes[0])
    out = disjoint(boxes)
    assert points(out, dims) == points(boxes, dims)
    for a, b in itertools.combinations(out, 2):
        assert any(a_hi < b_lo or b_hi < a_lo for (a_lo, a_hi), (b_lo, b_hi) in zip(a, b, strict=True))


def test_merges_what_it_can() -> None:
    assert disjoint([((0, 4), (0, 9)), ((5, 9), (0, 9))]) == [((0, 9), (0, 9))]
    assert disjoint([((0, 9), (0, 3)), ((0, 9), (2, 5))]) == [((0, 9), (0, 5))]
