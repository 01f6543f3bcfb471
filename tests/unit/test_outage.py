"""The outage probe's arithmetic: gaps, the first datagram after a fault, the outage a fault caused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.lab.outage import OutageProbe, Record, Stream, StreamReport, find_gaps, first_after, outage_after

MS = 1_000_000


def stream(lost: set[int], count: int = 100, interval_ms: int = 10, latency_ms: int = 1) -> list[Record]:
    """Datagram `seq` sent at seq * interval, arriving `latency` later unless it is in `lost`."""
    return [(seq, seq * interval_ms * MS, None if seq in lost else (seq * interval_ms + latency_ms) * MS)
            for seq in range(count)]  # fmt: skip


def test_no_loss_no_gap() -> None:
    assert find_gaps(stream(set())) == []
    assert find_gaps([]) == []


def test_one_gap_lasts_from_the_last_arrival_before_to_the_first_after() -> None:
    gaps = find_gaps(stream(set(range(20, 70))))
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.first_seq, gap.last_seq, gap.lost) == (20, 69, 50)
    assert gap.start_ns == 191 * MS and gap.end_ns == 701 * MS  # seq 19 arrived at 191 ms, seq 70 at 701 ms
    assert gap.duration_ms == 510
    assert (gap.first_sent_ns, gap.last_sent_ns) == (200 * MS, 690 * MS)


def test_gaps_in_order_and_one_lost_datagram_is_a_gap_of_two_intervals() -> None:
    gaps = find_gaps(stream({5, 40, 41, 42}))
    assert [(g.first_seq, g.lost) for g in gaps] == [(5, 1), (40, 3)]
    assert gaps[0].duration_ms == 20


def test_a_gap_at_the_start_counts_from_the_first_lost_send_and_one_at_the_end_is_open() -> None:
    first, last = find_gaps(stream({0, 1, 2, 97, 98, 99}))
    assert first.start_ns == 0 and first.end_ns == 31 * MS and first.lost == 3
    assert last.start_ns == 961 * MS and last.end_ns is None and last.duration_ms is None and last.lost == 3


def test_records_out_of_order_and_reordered_arrivals() -> None:
    records = stream({10, 11})
    records[12] = (12, 120 * MS, 100 * MS)  # overtook seq 9
    gaps = find_gaps(reversed(records))
    assert len(gaps) == 1 and gaps[0].end_ns == 100 * MS and gaps[0].start_ns == 91 * MS


def test_first_after_a_fault_and_the_outage_it_caused() -> None:
    records = stream(set(range(30, 60)))
    fault = 295 * MS  # seq 30 is the first sent after it, and lost
    assert first_after(records, fault) == 601 * MS
    assert first_after(records, 0) == 1 * MS
    assert first_after(records, 10_000 * MS) is None
    gap = outage_after(records, fault)
    assert gap is not None and gap.end_ns is not None and (gap.end_ns - fault) / MS == 306
    assert outage_after(records, 700 * MS) is None  # nothing lost after it
    assert outage_after(stream({3, 50}), 100 * MS) == find_gaps(stream({3, 50}))[1]


def test_stream_report_counts() -> None:
    report = StreamReport("a", "forward", tuple(stream({4, 5, 6})), duplicates=2)
    assert (report.sent, report.received, report.lost, report.duplicates) == (100, 97, 3, 2)
    assert report.gaps[0].lost == 3 and "3 lost (40 ms)" in report.summary()


@given(st.lists(st.booleans(), max_size=300))
def test_gaps_account_for_every_lost_datagram_once(arrived: list[bool]) -> None:
    records: list[Record] = [(seq, seq * 10, seq * 10 + 3 if ok else None) for seq, ok in enumerate(arrived)]
    gaps = find_gaps(records)
    assert sum(g.lost for g in gaps) == arrived.count(False)
    lost = {seq for g in gaps for seq in range(g.first_seq, g.last_seq + 1)}
    assert lost == {seq for seq, ok in enumerate(arrived) if not ok}
    for before, after in itertools.pairwise(gaps):
        assert before.last_seq + 1 < after.first_seq  # runs are maximal: a received datagram between
    for gap in gaps:
        assert gap.end_ns is None or gap.end_ns > gap.start_ns


def test_bad_arguments_are_refused_before_anything_opens() -> None:
    one = Stream("a", "ns1", "100.64.1.4", "ns2", "192.0.2.10", 7000)
    with pytest.raises(ValueError, match="1 to"):
        OutageProbe([])
    with pytest.raises(ValueError, match="unique"):
        OutageProbe([one, one])
    with pytest.raises(ValueError, match="interval"):
        OutageProbe([one], interval=0)
