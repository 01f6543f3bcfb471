"""The tiers' tc trees as text (linux/shaping.py): what a compartment is given, and what a retier changes."""

from __future__ import annotations

from isthmus.linux import shaping


def test_each_connection_gets_a_class_at_its_tier_chosen_by_its_prefixes() -> None:
    limits = [shaping.Limit("c1", 50_000, ("192.0.2.0/26", "192.0.2.64/26")), shaping.Limit("c2", 10_000, ())]
    lines = shaping._tree("x4096", limits, "src")
    assert lines[0].startswith("qdisc replace dev x4096 root handle 1: stab overhead -14")
    assert "class add dev x4096 parent 1: classid 1:10 htb rate 50000kbit ceil 50000kbit" in lines[1]
    filters = [line for line in lines if line.startswith("filter")]
    assert filters == [
        "filter add dev x4096 parent 1: protocol ip prio 1 u32 match ip src 192.0.2.0/26 flowid 1:10",
        "filter add dev x4096 parent 1: protocol ip prio 1 u32 match ip src 192.0.2.64/26 flowid 1:10",
    ]


def test_buckets_and_queues_scale_with_the_rate() -> None:
    assert shaping.burst_bytes(1_000) == 4 * 1514  # 5 ms at 1 Mbit/s is less than four packets
    assert shaping.burst_bytes(10_000) == 6250
    assert shaping.burst_bytes(500_000) == 312_500
    assert shaping.queue_bytes(100_000) == 625_000  # 50 ms at 100 Mbit/s


def test_a_new_rate_changes_classes_in_place() -> None:
    lines = shaping._rates("b4096", [shaping.Limit("c1", 200_000, ("192.0.2.0/26",))])
    assert [line.split()[0:2] for line in lines] == [["class", "change"], ["qdisc", "change"]]
