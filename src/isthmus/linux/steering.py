"""Steering of shared public IPs in one namespace (a MUX, a gateway node): packets to a shared address go where
their site's address (and GRE key) says, by an nftables mark and policy routing on it.

    prerouting (mangle), table ip isthmus_steer, maps keyed by (site . shared address[ . GRE key]) -> mark:
      ip protocol { udp, esp }          -> @ike       IKE (500, 4500), ESP in UDP, ESP; fragments too
      gre, K bit set, C bit clear       -> @gre       the key is the 32 bits after the 4-byte base header
      gre, K bit set, C bit set         -> @gre       ... after the checksum word as well (RFC 2890: offset 8)
      gre, K bit clear                  -> @grenokey
    ip rule pref 900 fwmark M lookup M  -> table M: default via TARGET dev D onlink (protocol 81)

One rule and one table per target (a MUX's gateway nodes, a node's compartments), so a packet's cost does
not grow with the entries (a map lookup, not a rule per site), and a change is a few map elements in one
nft transaction (linux/nft.py updates in place) plus, for a new target, one rule and one route. What no
entry matches keeps mark 0 and meets the shared address's blackhole (the MUX speaker's, or `blackholes`
here), so it is dropped, not bounced back to the ToR. Non-first fragments of GRE carry no key and are
dropped (GRE sites send whole packets: the tunnel MTU is theirs to set).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from isthmus.linux.nft import ensure_table
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import ip_batch, ip_json
from isthmus.model.steering import GRE, SteerKey

TABLE = "isthmus_steer"
RULE_PREF = 900  # before the main table (32766)
PROTO = "81"  # the steering routes (77: the agent's forwarding routes, 78: announcements and tunnels, 80: BGP)


@dataclass(frozen=True, order=True)
class Target:
    """Where one set of steered packets goes: its mark (also the number of its routing table) and next hop."""

    mark: int
    device: str
    via: str


@dataclass(frozen=True, order=True)
class Entry:
    vip: str  # the shared address
    key: SteerKey
    target: Target


def body(entries: Iterable[Entry]) -> str:
    """The nftables table that marks steered packets (linux/nft.py's body form: maps' elements on one line)."""
    ike, gre, nokey = [], [], []
    for e in sorted(entries):
        mark = f"{e.target.mark:#x}"
        if e.key.protocol != GRE:
            ike.append(f"{e.key.site} . {e.vip} : {mark}")
        elif e.key.gre_key is None:
            nokey.append(f"{e.key.site} . {e.vip} : {mark}")
        else:
            gre.append(f"{e.key.site} . {e.vip} . {e.key.gre_key} : {mark}")

    def table(name: str, header: str, elements: list[str]) -> list[str]:
        listed = [f"elements = {{ {', '.join(elements)} }}"] if elements else []
        return [f"map {name} {{", header, *listed, "}"]

    return "\n".join([
        *table("ike", "type ipv4_addr . ipv4_addr : mark", ike),
        *table("gre", "typeof ip saddr . ip daddr . @th,32,32 : meta mark", gre),
        *table("grenokey", "type ipv4_addr . ipv4_addr : mark", nokey),
        "chain prerouting {",
        "type filter hook prerouting priority mangle; policy accept;",
        "ip protocol { udp, esp } meta mark set ip saddr . ip daddr map @ike",
        "ip protocol gre @th,0,1 0 @th,2,1 1 meta mark set ip saddr . ip daddr . @th,32,32 map @gre",
        "ip protocol gre @th,0,1 1 @th,2,1 1 meta mark set ip saddr . ip daddr . @th,64,32 map @gre",
        "ip protocol gre @th,2,1 0 meta mark set ip saddr . ip daddr map @grenokey",
        "}",
    ])  # fmt: skip


def ensure_steering(
    netns: str | None, entries: Iterable[Entry], blackholes: Iterable[str] = (), *, verify: bool = True
) -> int:
    """Make the namespace steer exactly `entries` (and drop what else comes for `blackholes`, the shared
    addresses a node holds no route for); the number of changes. verify=False trusts what this process
    loaded last in the nftables table (the rules and routes are read every time: a device that went down
    took its routes with it)."""
    entries = sorted(set(entries))
    targets = sorted({e.target for e in entries})
    changes = int(ensure_table(netns, "ip", TABLE, body(entries), verify=verify))
    changes += _ensure_rules(netns, {t.mark for t in targets})
    routes = {(t.mark, Route("default", t.device, t.via)) for t in targets}
    changes += _ensure_table_routes(netns, routes)
    changes += ensure_routes(netns, [Route(vip, blackhole=True) for vip in sorted(set(blackholes))], proto=PROTO)
    return changes


def _ensure_rules(netns: str | None, marks: set[int]) -> int:
    have = {
        int(str(r.get("fwmark", "0")), 0)
        for r in ip_json(netns, "rule", "show", "pref", str(RULE_PREF))
        if r.get("priority") == RULE_PREF
    }
    lines = [f"rule del pref {RULE_PREF} fwmark {m:#x}" for m in sorted(have - marks)]
    lines += [f"rule add pref {RULE_PREF} fwmark {m:#x} lookup {m}" for m in sorted(marks - have)]
    ip_batch(netns, lines)
    return len(lines)


def _ensure_table_routes(netns: str | None, wanted: set[tuple[int, Route]]) -> int:
    have = set()
    for r in ip_json(netns, "route", "show", "table", "all", "proto", PROTO):
        table = r.get("table")
        if r.get("dst") == "default" and table is not None and str(table).isdigit():
            have.add((int(table), Route("default", r.get("dev"), r.get("gateway"))))
    lines = [f"route del {route.spec()} table {table} proto {PROTO}" for table, route in sorted(have - wanted)]
    lines += [f"route replace {route.spec()} table {table} proto {PROTO}" for table, route in sorted(wanted - have)]
    ip_batch(netns, lines)
    return len(lines)
