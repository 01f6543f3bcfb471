"""The in-place update of a table, worked out from two bodies without a kernel (linux/nft.py)."""

from __future__ import annotations

from isthmus.linux.nft import Block, blocks_of, update_script

TABLE = "inet isthmus"


def body(elements: str = "1, 2, 3", rules: str = "tcp dport @s drop", extra: str = "") -> str:
    return "\n".join([
        "set s {", "type inet_service", "flags interval", f"elements = {{ {elements} }}", "}",
        "chain forward {", "type filter hook forward priority filter; policy accept;", "jump c", "}",
        "chain c {", rules, "}", extra,
    ])  # fmt: skip


def test_a_body_is_read_as_its_sets_and_chains() -> None:
    blocks = blocks_of(body())
    assert blocks == {
        "s": Block("set", ("type inet_service", "flags interval"), ("1", "2", "3")),
        "forward": Block("chain", ("type filter hook forward priority filter; policy accept;",), ("jump c",)),
        "c": Block("chain", (), ("tcp dport @s drop",)),
    }


def test_what_it_cannot_match_up_is_loaded_whole() -> None:
    assert blocks_of("map m {\ntype ipv4_addr : mark\nelements = { 1.2.3.4 : 0x1 }\n}") == {
        "m": Block("map", ("type ipv4_addr : mark",), ("1.2.3.4 : 0x1",))
    }
    assert blocks_of('set s {\ntype ifname\nelements = { "a, b" }\n}') is None  # a comma inside an element
    assert blocks_of("chain c {\naccept") is None  # not closed
    assert blocks_of("chain digest {\n}") is None  # the digest's own chain
    old, new = blocks_of(body()), blocks_of(body().replace("priority filter", "priority raw"))
    assert old is not None and new is not None
    assert update_script(TABLE, old, new) is None  # a base chain's hook cannot change in place


def test_an_edit_is_a_few_elements_and_the_chains_whose_rules_changed() -> None:
    old = blocks_of(body(elements=", ".join(str(p) for p in range(10, 40))))
    new = blocks_of(body(elements=", ".join(str(p) for p in range(11, 41)), rules="tcp dport @s reject"))
    assert old is not None and new is not None
    assert update_script(TABLE, old, old) == []
    assert update_script(TABLE, old, new) == [
        "flush chain inet isthmus c",
        "add rule inet isthmus c tcp dport @s reject",
        "delete element inet isthmus s { 10 }",
        "add element inet isthmus s { 40 }",
    ]


def test_new_objects_come_first_and_what_is_gone_last() -> None:
    old = blocks_of(body(extra="chain gone {\njump c\n}"))
    added = "chain d {\ntcp dport @t accept\n}\nset t {\ntype inet_service\n}"
    new = blocks_of(body(rules="tcp dport @s drop\njump d", extra=added))
    assert old is not None and new is not None
    assert update_script(TABLE, old, new) == [
        "add chain inet isthmus d",
        "add set inet isthmus t { type inet_service; }",
        "flush chain inet isthmus c",
        "add rule inet isthmus c tcp dport @s drop",
        "add rule inet isthmus c jump d",
        "add rule inet isthmus d tcp dport @t accept",
        "flush chain inet isthmus gone",
        "delete chain inet isthmus gone",
    ]


def test_a_difference_larger_than_the_body_is_a_whole_load() -> None:
    old = blocks_of(body(elements=", ".join(str(p) for p in range(100, 200))))
    new = blocks_of(body(elements=", ".join(str(p) for p in range(300, 400))))
    assert old is not None and new is not None
    assert update_script(TABLE, old, new) is None
