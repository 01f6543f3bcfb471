"""Faults the lab injects: a link that silently drops everything (no carrier loss, no FIN or RST), in
both directions, for traffic the node forwards as well as its own (BGP, BFD)."""

from __future__ import annotations

from isthmus.linux.run import in_netns, run

TABLE = "isthmus_silent"


def silence(netns: str, device: str) -> None:
    rules = (
        f"table inet {TABLE} {{\n"
        f' chain in {{ type filter hook prerouting priority -500; policy accept; iifname "{device}" drop; }}\n'
        f' chain out {{ type filter hook postrouting priority -500; policy accept; oifname "{device}" drop; }}\n'
        "}\n"
    )
    run(in_netns(netns, ["nft", "-f", "-"]), stdin=rules)


def unsilence(netns: str) -> None:
    run(in_netns(netns, ["nft", "delete", "table", "inet", TABLE]))
