"""Helpers shared by the tests that drive real namespaces and daemons."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from isthmus.lab import fabric, sites, vms
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import in_netns, netns_pids

SPEAKERS = (b"gobgpd", b"bird")  # the MUX's BGP speaker is one of these (isthmus agent mux --speaker)


def require_root() -> None:
    """Namespaces need root. Without it a developer's run skips these modules; CI runs as root, so there a
    missing root is a failure, never a silent skip."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run as root: these tests build network namespaces", pytrace=False)
    pytest.skip("needs root (network namespaces)", allow_module_level=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The first truthy value of `predicate`, polled every 50 ms; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def speaker_pids(netns: str) -> list[int]:
    """The BGP speaker processes (gobgpd or BIRD, whichever the MUX agent runs) in a namespace."""
    pids = []
    for pid in netns_pids(netns):
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(program) in SPEAKERS:
            pids.append(pid)
    return pids


# A remote site's swanctl.conf, written by hand (the sites must not depend on the code they test): the lab's
# IPsec tests and the kernel tier's share it.
SITE_CONF = """connections {{
  azure {{
    version = 2
    local_addrs = {me}
    remote_addrs = {vip}
    proposals = {ike}
    dpd_delay = 5s
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {vip}
    }}
    children {{
      azure {{
        local_ts = {prefix}
        remote_ts = {remote}
        esp_proposals = {esp}
        dpd_action = clear
        start_action = {start}
      }}
    }}
  }}
}}
secrets {{
  ike-azure {{
    id-1 = {vip}
    id-2 = {me}
    secret = "{secret}"
  }}
}}
"""


def site_conf(me: str, vip: str, secret: str, ike: str = "aes256-sha384-ecp384", esp: str = "aes256gcm16-ecp384",
              local: str = "192.0.2.0/26", remote: str = "100.64.0.0/16", start: str = "none") -> str:  # fmt: skip
    return SITE_CONF.format(me=me, vip=vip, prefix=local, secret=secret, ike=ike, esp=esp, remote=remote,
                            start=start)  # fmt: skip


ON_PREMISES = "192.0.2.0/26"  # the same behind every site, as the same VNet space in every tenant
KEY = "Sh4red-Key-for-the-lab"


@dataclass
class Side:
    tenant: Tenant
    vm: vms.Vm
    vip: str
    site: sites.Site


def gateway_tenant(lab: fabric.LabState, subscription: str, tag: str, host: str,
                   bgp_asn: int | None = None) -> tuple[Tenant, vms.Vm, str]:  # fmt: skip
    """A tenant's VNet 100.64.0.0/16 with one VM (`tag`1) on `host` and a VPN gateway "gw" (with BGP at `bgp_asn`):
    (tenant, VM, VIP)."""
    t = Tenant(lab, subscription)
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
    t.nic(f"{tag}1", "vnet1", "front")
    vm = vms.create(lab, f"{tag}1", t.id(f"networkInterfaces/{tag}1"), host)
    vip = t.public_ip("gw-pip")
    t.vpn_gateway("gw", "vnet1", "gw-pip", bgp_asn=bgp_asn)
    return t, vm, vip


def vpn_side(lab: fabric.LabState, subscription: str, tag: str, host: str, site_address: str, secret: str = KEY,
          **conf: str) -> Side:  # fmt: skip
    """`gateway_tenant`'s with a connection to an independent strongSwan site at `site_address` (its
    swanctl.conf is `site_conf`'s, written by hand) with ON_PREMISES behind it."""
    t, vm, vip = gateway_tenant(lab, subscription, tag, host)
    t.local_gateway("onprem", site_address, [ON_PREMISES])
    site = sites.create(lab, f"s{tag}", site_address, ON_PREMISES, site_conf(site_address, vip, secret, **conf))
    t.connection("to-onprem", "gw", "onprem", KEY)
    return Side(t, vm, vip, site)


def capture(netns: str, capture_filter: str, pcap: Path, traffic: Callable[[], object]) -> Path:
    """tshark on `netns`'s eth0 (its capture filter `capture_filter`) for 4 s, while `traffic()` runs (and must
    answer true: a ping that failed makes a capture worth nothing)."""
    tshark = subprocess.Popen(in_netns(netns, ["tshark", "-q", "-i", "eth0", "-f", capture_filter, "-a", "duration:4",
                                               "-w", str(pcap)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1.5)  # tshark is listening
        assert traffic(), "the traffic during the capture failed"
        tshark.wait(timeout=15)
    finally:
        if tshark.poll() is None:
            tshark.kill()
            tshark.wait()
    return pcap


def tshark_fields(pcap: Path, fields: list[str]) -> list[dict[str, str]]:
    """Each packet of `pcap` as {field: its first occurrence}."""
    options = ["-T", "fields", *(a for f in fields for a in ("-e", f)), "-E", "separator=/t", "-E", "occurrence=f"]
    done = subprocess.run(["tshark", "-r", str(pcap), *options], capture_output=True, text=True, timeout=30,
                          check=True)  # fmt: skip
    return [dict(zip(fields, line.split("\t"), strict=False)) for line in done.stdout.splitlines() if line]
