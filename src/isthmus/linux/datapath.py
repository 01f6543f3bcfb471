"""Which implementation of each data-plane function a node uses, given what its kernel offers
(linux/capabilities.py), and the probe an agent runs once at start to tell the controller.

`choose_datapath` answers one entry per function:

    ipsec     "xfrm"       ESP SAs in the kernel (XFRM)
              "libipsec"   ESP in user space (strongSwan's kernel-libipsec over a TUN device)
    gre       "ip_gre"     keyed GRE tunnels in the kernel
              "gre_tun"    isthmus' own userspace GRE datapath over TUN devices (linux/gre_datapath.py)
    vlan      "8021q"      802.1Q sub-interfaces
              "unavailable"
    overlay   "vxlan"      the VNet overlay as kernel VXLAN devices
              "unavailable"
    filter    "nftables"   NSGs, NAT and the host guard as nftables tables
              "unavailable"
    fastpath  "flowtable"  established flows offloaded to an nftables flowtable
              "none"       every packet takes the full forwarding path

vrf and netem choose nothing: tenant routing is isolated by namespaces, and netem only serves the lab's
fault injection; both are still reported with the rest of the capabilities.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from isthmus.linux.capabilities import Capabilities, probe
from isthmus.linux.run import LinuxError

UNAVAILABLE = "unavailable"
log = logging.getLogger("isthmus.agent")


def choose_datapath(caps: Capabilities) -> dict[str, str]:
    """function -> the implementation this node uses (see the module's docstring for the names)."""
    return {
        "ipsec": "xfrm" if caps.esp else "libipsec",
        "gre": "ip_gre" if caps.gre else "gre_tun",
        "vlan": "8021q" if caps.vlan else UNAVAILABLE,
        "overlay": "vxlan" if caps.vxlan else UNAVAILABLE,
        "filter": "nftables" if caps.nft else UNAVAILABLE,
        "fastpath": "flowtable" if caps.nft and caps.nft_flowtable else "none",
    }


def registration_capabilities(caps: Capabilities) -> dict[str, Any]:
    """What a registration carries: the capabilities and the datapath chosen from them."""
    return {**caps.to_json(), "datapath": choose_datapath(caps)}


def probe_for_registration() -> dict[str, Any] | None:
    """Probe this node's kernel for its registration; None (and a warning) if the probe cannot run, so an
    agent without the privileges for it still registers."""
    try:
        return registration_capabilities(probe())
    except (LinuxError, OSError, subprocess.SubprocessError) as error:
        log.warning("capability probe failed, registering without capabilities: %s", error)
        return None
