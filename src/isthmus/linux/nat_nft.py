"""NAT and the host's own guard rails, as nftables table bodies. Pure text.

Inbound to a public IP:  host routes VIP/32 into the VNet router; the router DNATs VIP -> private.
Replies and a public-IP VM's own flows: the router SNATs private -> VIP; the host sends them straight to
the ToR (direct server return). A VM without a public IP: the router SNATs it to its transit address and
the host SNATs that to the host's outbound NAT address; nothing can open a flow the other way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TRANSIT = "198.19.128.0/17"  # host <-> VNet router /31s, one per router on a host


def router_nat(public: Mapping[str, str], transit_address: str) -> str:
    """`public`: VIP -> private address of the NIC it is attached to."""
    lines = ["chain prerouting {", "type nat hook prerouting priority dstnat; policy accept;"]
    if public:
        pairs = ", ".join(f"{vip} : {private}" for vip, private in sorted(public.items()))
        lines.append(f'iifname "up0" dnat to ip daddr map {{ {pairs} }}')
    lines += ["}", "chain postrouting {", "type nat hook postrouting priority srcnat; policy accept;"]
    if public:
        pairs = ", ".join(f"{private} : {vip}" for vip, private in sorted(public.items()))
        lines.append(f'oifname "up0" snat to ip saddr map {{ {pairs} }}')
    lines += [f'oifname "up0" snat to {transit_address}', "}"]
    return "\n".join(lines)


def host_guard(outbound: str | None, infrastructure: Sequence[str]) -> str:
    """Tenants reach neither the host nor the fabric; outbound NAT to the host's public address."""
    lines = [
        "chain input {",
        "type filter hook input priority filter; policy accept;",
        'iifname "t*" drop',
        "}",
        "chain forward {",
        "type filter hook forward priority filter; policy accept;",
    ]
    if infrastructure:
        lines.append(f'iifname "t*" ip daddr {{ {", ".join(infrastructure)} }} drop')
    if outbound is None:
        lines.append(f'ip saddr {TRANSIT} oifname != "t*" drop')
    lines += ["}", "chain postrouting {", "type nat hook postrouting priority srcnat; policy accept;"]
    if outbound is not None:
        lines.append(f'ip saddr {TRANSIT} oifname != "t*" snat to {outbound}')
    lines.append("}")
    return "\n".join(lines)


def compartment_guard(vip: str | None, gre_remotes: Sequence[str] = ()) -> str:
    """A gateway compartment's filter: from the fabric only IKE, ESP, ping and GRE from its sites' endpoints
    reach its VIP, and nothing crosses between the fabric and the VNet but tunnelled traffic (ESP decrypted by
    the kernel carries a secpath; userspace ESP and GRE arrive on their own devices instead of up0)."""
    lines = ["chain input {", "type filter hook input priority filter; policy accept;"]
    if vip:
        lines += [
            f'iifname "up0" ip daddr {vip} udp dport {{ 500, 4500 }} accept',
            f'iifname "up0" ip daddr {vip} ip protocol esp accept',
            f'iifname "up0" ip daddr {vip} icmp type echo-request accept',
        ]
        if gre_remotes:
            lines.append(f'iifname "up0" ip daddr {vip} ip saddr {{ {", ".join(sorted(set(gre_remotes)))} }} '
                         "ip protocol gre accept")  # fmt: skip
    lines += [
        'iifname "up0" ct state established,related accept',
        'iifname "up0" drop',
        "}",
        "chain forward {",
        "type filter hook forward priority filter; policy accept;",
        'iifname "up0" meta secpath missing drop',
        'oifname "up0" rt ipsec missing drop',
        "}",
    ]
    return "\n".join(lines)


NO_NAT = "\n".join(["chain postrouting {", "type nat hook postrouting priority srcnat; policy accept;", "}"])
