"""A VNet router namespace between a VM and a peer, without a controller: what the NSG kernel test and the
data plane benchmark load NSG programs into, exactly as the host agent would.

    peer netns (peer addresses) ── np ─ router netns ─ nvm ── VM netns (vm address)

Proxy ARP on the router answers for both sides, so each end simply routes everything out of eth0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from isthmus.linux.run import add_netns, delete_netns, ip_batch, sysctl


@contextmanager
def router_between(
    tag: str, vm: str, peers: Sequence[str], vm_prefixlen: int = 16, gateway: str = "100.64.1.1"
) -> Iterator[dict[str, str]]:
    """Namespaces {router, vm, peer} named after `tag` (the router holds the VM's `gateway` on its loopback);
    always removed on exit."""
    names = {"router": f"{tag}-router", "vm": f"{tag}-vm", "peer": f"{tag}-peer"}
    try:
        for name in names.values():
            add_netns(name)
        router, vm_ns, peer = names["router"], names["vm"], names["peer"]
        sysctl(router, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.proxy_arp": "1"})
        ip_batch(router, [
            f"link add nvm type veth peer name eth0 netns {vm_ns}",
            f"link add np type veth peer name eth0 netns {peer}",
            "ntable change name arp_cache dev nvm proxy_delay 0", "ntable change name arp_cache dev np proxy_delay 0",
            "link set nvm up", "link set np up", f"addr add {gateway}/32 dev lo", f"route add {vm}/32 dev nvm",
            *(f"route add {p}/32 dev np" for p in peers),
        ])  # fmt: skip
        ip_batch(vm_ns, [f"addr add {vm}/{vm_prefixlen} dev eth0", "link set eth0 up", "route add default dev eth0"])
        ip_batch(
            peer, [*(f"addr add {p}/32 dev eth0" for p in peers), "link set eth0 up", "route add default dev eth0"]
        )
        yield names
    finally:
        for name in names.values():
            delete_netns(name)
