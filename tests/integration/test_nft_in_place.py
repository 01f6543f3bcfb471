"""NSG tables changed in place (linux/nft.py): the kernel ends up exactly as a fresh load would leave it, a
packet is judged by the old NSG or by the new one and never by a mix, and drift is still repaired.

    peer netns (198.51.100.7, …) ── np ─ router netns (edited in place) ─ nvm ── VM netns (100.64.1.4)
    fresh netns: the same bodies loaded whole, to compare with
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from isthmus.compile.security_rules import compile_nsg, verify_flow
from isthmus.lab.tenant import rule
from isthmus.lab.testbed import router_between
from isthmus.linux import libnft, nft
from isthmus.linux.nsg_nft import Port, render_filter
from isthmus.linux.run import NETNS_DIR, add_netns, delete_netns, in_netns, run
from isthmus.linux.sockets import socket_in
from tests.integration.test_nsg_kernel import CONTEXT, OBSERVER, PEERS, VM, aimed_at, arrived, long_runs, send
from tests.support import require_root
from tests.unit.test_security_rules import rule_sets

require_root()

EXAMPLES = int(os.environ.get("ISTHMUS_KERNEL_EXAMPLES", "150")) // 3
TABLE = ("inet", "isthmus")
PORT_SETS = {
    "both": [Port("nvm", "nic", "subnet")],
    "nic only": [Port("nvm", "nic", None)],
    "two ports": [Port("nvm", "nic", "subnet"), Port("nx", None, "subnet")],
}


@pytest.fixture(scope="module")
def beds() -> Iterator[dict[str, str]]:
    tag = f"ni{os.getpid() % 100000}"
    with router_between(tag, VM, PEERS) as names:
        names["fresh"] = f"{tag}-fresh"
        try:
            add_netns(names["fresh"])
            for observer in (names["vm"], names["peer"]):
                run(in_netns(observer, ["nft", "-f", "-"]), stdin=OBSERVER)
            yield names
        finally:
            delete_netns(names["fresh"])


def listing(netns: str) -> dict[str, Any]:
    """The table as the kernel holds it: sets with their elements (unordered), chains with their rules (in
    order), without handles."""
    items = json.loads(run(in_netns(netns, ["nft", "-j", "list", "table", *TABLE])))["nftables"]
    out: dict[str, Any] = {}
    for item in items:
        if "set" in item:
            found = dict(item["set"])
            elements = sorted(json.dumps(e, sort_keys=True) for e in found.pop("elem", []))
            found.pop("handle")
            out[f"set {found['name']}"] = (json.dumps(found, sort_keys=True), elements)
        elif "chain" in item:
            found = dict(item["chain"])
            found.pop("handle")
            out.setdefault(f"chain {found['name']}", [json.dumps(found, sort_keys=True)])
        elif "rule" in item:
            found = dict(item["rule"])
            found.pop("handle")
            out[f"chain {found['chain']}"].append(json.dumps(found, sort_keys=True))
    return out


def table_handle(netns: str) -> int:
    """The kernel's handle of the table: a whole load makes a new table, an update in place keeps it."""
    items = json.loads(run(in_netns(netns, ["nft", "-j", "list", "table", *TABLE])))["nftables"]
    return int(next(i["table"]["handle"] for i in items if "table" in i))


def body(ports: list[Port], subnet_rules: list[dict[str, Any]], nic_rules: list[dict[str, Any]]) -> str:
    return render_filter(ports, {"subnet": compile_nsg(subnet_rules, CONTEXT), "nic": compile_nsg(nic_rules, CONTEXT)})


@st.composite
def edited(draw: st.DrawFn, nsgs: st.SearchStrategy[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """An NSG and the same NSG after a tenant's edits: rules changed (priority and direction kept), added,
    or removed."""
    before = draw(nsgs)
    after = copy.deepcopy(before)
    fresh = draw(rule_sets())
    for index, new in enumerate(fresh[: draw(st.integers(1, 3))]):
        action = draw(st.sampled_from(["change", "add", "remove"]))
        if action == "change" and after:
            old = after[draw(st.integers(0, len(after) - 1))]["properties"]
            keep = {"priority": old["priority"], "direction": old["direction"]}
            old.clear()
            old.update(new["properties"], **keep)
        elif action == "remove" and after:
            after.pop(draw(st.integers(0, len(after) - 1)))
        else:
            used = {(r["properties"]["direction"], r["properties"]["priority"]) for r in after}
            props = new["properties"]
            if (props["direction"], props["priority"]) not in used:
                after.append({"name": f"added{index}", "properties": props})
    return [before, after]


nsgs = st.one_of(rule_sets(), long_runs())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subnet=edited(nsgs), nic=edited(nsgs), ports=st.sampled_from(sorted(PORT_SETS)),
       after_ports=st.sampled_from(sorted(PORT_SETS)), data=st.data())  # fmt: skip
def test_an_edited_nsg_loaded_in_place_is_what_a_fresh_load_gives(
    beds: dict[str, str],
    subnet: list[list[dict[str, Any]]],
    nic: list[list[dict[str, Any]]],
    ports: str,
    after_ports: str,
    data: st.DataObject,
) -> None:
    old = body(PORT_SETS[ports], subnet[0], nic[0])
    new = body(PORT_SETS[after_ports], subnet[1], nic[1])
    nft.ensure_table(beds["router"], *TABLE, old, in_place=False)
    handle = table_handle(beds["router"])
    blocks = nft.blocks_of(old), nft.blocks_of(new)
    assert blocks[0] is not None and blocks[1] is not None
    in_place = nft.update_script("inet isthmus", blocks[0], blocks[1]) is not None
    event("updated in place" if in_place else "loaded whole")
    assert nft.ensure_table(beds["router"], *TABLE, new, verify=False) == (old != new)
    nft.ensure_table(beds["fresh"], *TABLE, new, in_place=False)
    assert listing(beds["router"]) == listing(beds["fresh"])
    if in_place:
        assert table_handle(beds["router"]) == handle
    # and the kernel judges the edited rules as IP flow verify does
    programs = compile_nsg(subnet[1], CONTEXT), compile_nsg(nic[1], CONTEXT)
    edited_rules = [r for r in subnet[1] + nic[1] if r not in subnet[0] + nic[0]]
    for target in edited_rules[:2]:
        flow = aimed_at(target, data.draw)
        run(in_netns(beds["router"], ["conntrack", "-F"]), check=False)
        source, destination = ("peer", "vm") if flow.direction == "Inbound" else ("vm", "peer")
        arrived(beds[destination])
        send(beds[source], flow)
        subnet_nsg = ("subnet", programs[0]) if PORT_SETS[after_ports][0].subnet_nsg else None
        verdict = verify_flow(flow, subnet_nsg, ("nic", programs[1]))
        assert arrived(beds[destination]) == (verdict.access == "Allow"), (verdict, flow)


COUNTERS = """table inet counted {
counter denied {}
counter allowed {}
chain prerouting {
type filter hook prerouting priority raw; policy accept;
udp dport 5300 counter name denied
udp dport 5400 counter name allowed
}
}
"""


def counted(netns: str, name: str) -> int:
    out = run(in_netns(netns, ["nft", "list", "counter", "inet", "counted", name]))
    return int(out.split("packets ")[1].split()[0])


# Two versions of one NSG that both deny UDP 5300 from the peer, so that any mix of them (the old
# element or rule deleted, the new one not yet added) would let 5300 through. "set": the deny is an
# element of a run's set (changed element by element); "rule": a plain rule (its chain flushed and refilled).
VERSIONS = {
    "set": (
        [rule("deny", 100, "Deny", protocol="Udp", source="198.51.100.7", ports="5300"),
         rule("deny-other", 101, "Deny", protocol="Tcp", ports="9"), rule("allow", 200)],
        [rule("deny", 100, "Deny", protocol="Udp", source="198.51.100.0/24", ports="5290-5310"),
         rule("deny-other", 101, "Deny", protocol="Tcp", ports="9"), rule("allow", 200)],
    ),
    "rule": (
        [rule("deny", 100, "Deny", protocol="Udp", source="198.51.100.7", ports="5300"), rule("allow", 200)],
        [rule("deny", 100, "Deny", protocol="Udp", source="198.51.100.0/24", ports="5290-5310"), rule("allow", 200)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(VERSIONS))
def test_a_packet_sees_the_old_nsg_or_the_new_never_a_mix(beds: dict[str, str], kind: str) -> None:
    run(in_netns(beds["vm"], ["nft", "-f", "-"]), stdin=f"table inet counted\ndelete table inet counted\n{COUNTERS}")
    bodies = [body([Port("nvm", "nic", None)], [], rules) for rules in VERSIONS[kind]]
    nft.ensure_table(beds["router"], *TABLE, bodies[0], in_place=False)
    handle = table_handle(beds["router"])
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        sock = socket_in(beds["peer"], socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("198.51.100.7", 0))
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            sock.sendto(b"x", (VM, 5300))
            sock.sendto(b"x", (VM, 5400))
            sent[0] += 1
        sock.close()

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        for load in range(60):
            nft.ensure_table(beds["router"], *TABLE, bodies[(load + 1) % 2], verify=False)
            time.sleep(0.002)
    finally:
        stop.set()
        sender.join()
    assert table_handle(beds["router"]) == handle  # every load was in place
    assert sent[0] > 100 and counted(beds["vm"], "allowed") > 100, sent
    assert counted(beds["vm"], "denied") == 0


def test_a_table_changed_behind_our_back_is_repaired_and_a_restart_changes_nothing(beds: dict[str, str]) -> None:
    router = beds["router"]
    first = body([Port("nvm", "nic", None)], [], [rule("a", 100, protocol="Tcp", ports="22")])
    second = body([Port("nvm", "nic", None)], [], [rule("a", 100, protocol="Tcp", ports="23")])
    nft.ensure_table(router, *TABLE, first)
    run(in_netns(router, ["nft", "delete", "table", *TABLE]))  # between two full passes
    assert nft.ensure_table(router, *TABLE, second, verify=False)  # the update in place is refused: whole
    nft.ensure_table(beds["fresh"], *TABLE, second, in_place=False)
    assert listing(router) == listing(beds["fresh"])
    run(in_netns(router, ["nft", "-f", "-"]), stdin="flush table inet isthmus\ndelete table inet isthmus\n"
        "table inet isthmus {\nchain digest {\ncomment \"0000\"\n}\n}\n")  # fmt: skip
    assert nft.ensure_table(router, *TABLE, second, verify=False) is False  # trusted between full passes
    assert nft.ensure_table(router, *TABLE, second) is True  # a full pass repairs it
    assert listing(router) == listing(beds["fresh"])
    libnft.close(f"{NETNS_DIR}/{router}")  # a restarted agent remembers nothing
    assert nft.ensure_table(router, *TABLE, second, verify=False) is False
    assert nft.ensure_table(router, *TABLE, second) is False
