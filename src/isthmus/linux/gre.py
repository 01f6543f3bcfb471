"""A compartment's GRE tunnels: one device per GRE connection, its inner address, the routes to the site.

Where the node's kernel has ip_gre (linux/capabilities.py) a tunnel is a kernel GRE device; elsewhere it is a
persistent TUN device carried by the compartment's userspace datapath (linux/gre_datapath.py), supervised by
the agent. Either way the device is named `gt` + a digest of the connection id, holds the connection's tunnel
address (if it has one), and the site's prefixes are routed onto it (routes of their own protocol number,
apart from the compartment router's). A kernel device records what it was made with in its alias, so a
changed remote, key or checksum makes it anew; a TUN device's endpoints live in the datapath's configuration.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isthmus.linux import gre_wire
from isthmus.linux.gre_datapath import STATS
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import ip_batch, ip_json
from isthmus.linux.supervisor import Daemon
from isthmus.model.documents import Connection

PREFIX = "gt"
ROUTE_PROTO = "78"  # the tunnels' routes: isthmus' own (77) belong to the compartment router
PATH_MTU = 1500  # what a tunnel over the Internet must assume of the path to the site
CONFIG = "gre.json"
STALE_STATS_S = 3.0


@dataclass(frozen=True, order=True)
class GreTunnel:
    device: str
    remote: str
    key: int | None
    checksum: bool
    inner: str | None  # this side's tunnel address with its prefix length
    prefixes: tuple[str, ...]  # the site's, routed onto the device

    @property
    def mtu(self) -> int:
        return PATH_MTU - 20 - gre_wire.overhead(key=self.key is not None, checksum=self.checksum)

    def identity(self, local: str) -> str:
        """What a kernel device is made from (its alias): a change makes it anew."""
        return f"isthmus gre local={local} remote={self.remote} key={self.key} csum={int(self.checksum)}"


def device_name(connection_id: str) -> str:
    return PREFIX + hashlib.sha256(connection_id.lower().encode()).hexdigest()[:10]


def tunnel_of(connection: Connection) -> GreTunnel | None:
    """The tunnel a GRE connection of the document asks for (None: it names no remote endpoint)."""
    if connection.connection_type != "GRE" or connection.remote_address is None:
        return None
    settings = connection.gre_settings
    return GreTunnel(
        device=device_name(connection.id),
        remote=str(connection.remote_address),
        key=settings.key if settings else None,
        checksum=bool(settings and settings.checksum),
        inner=str(settings.tunnel_address) if settings and settings.tunnel_address else None,
        prefixes=tuple(str(p) for p in connection.remote_prefixes if p.version == 4),
    )


def datapath_daemon(netns: str, run_dir: Path, local: str, tunnels: Sequence[GreTunnel]) -> Daemon:
    """The userspace datapath of one compartment (its configuration is part of what the supervisor compares)."""
    config = {"local": local, "tunnels": [{"device": t.device, "remote": t.remote, "key": t.key,
                                           "checksum": t.checksum} for t in sorted(tunnels)]}  # fmt: skip
    stats = run_dir / STATS
    return Daemon(
        "gre",
        (sys.executable, "-m", "isthmus.linux.gre_datapath", str(run_dir / CONFIG)),
        run_dir,
        netns,
        configs={CONFIG: json.dumps(config, sort_keys=True)},
        stale=(stats,),
        probe=lambda: _fresh(stats),
        start_timeout=10.0,
    )


def _fresh(stats: Path) -> bool:
    try:
        return time.time() - stats.stat().st_mtime < STALE_STATS_S
    except OSError:
        return False


def ensure_tunnels(netns: str, local: str, tunnels: Sequence[GreTunnel], *, kernel: bool, remove: bool = True) -> int:
    """Make the compartment's GRE devices, their addresses and routes exactly `tunnels`; the changes made. With
    remove=False the devices of other tunnels stay (a datapath still holding them is reconfigured first)."""
    links = {link["ifname"]: link for link in ip_json(netns, "addr", "show")}
    if kernel:  # the alias is in the link's record only
        for record in ip_json(netns, "link", "show"):
            if record["ifname"] in links and "ifalias" in record:
                links[record["ifname"]]["ifalias"] = record["ifalias"]
    wanted = {t.device: t for t in tunnels}
    stale = [name for name in sorted(links) if name.startswith(PREFIX) and name not in wanted]
    lines = [f"link del {name}" for name in stale] if remove else []
    for device, tunnel in sorted(wanted.items()):
        link: dict[str, Any] | None = links.get(device)
        made = link is not None and (not kernel or link.get("ifalias") == tunnel.identity(local))
        if link is not None and not made:
            lines.append(f"link del {device}")
        if not made:
            lines += _create(device, tunnel, local, kernel=kernel)
            link = None
        if link is None or link.get("mtu") != tunnel.mtu or "UP" not in link.get("flags", ()):
            lines.append(f"link set {device} mtu {tunnel.mtu} up")
        held = {f"{a['local']}/{a['prefixlen']}" for a in (link or {}).get("addr_info", []) if a["family"] == "inet"}
        want = {tunnel.inner} if tunnel.inner else set()
        lines += [f"addr del {a} dev {device}" for a in sorted(held - want)]
        lines += [f"addr add {a} dev {device}" for a in sorted(want - held)]
    ip_batch(netns, lines)
    routes = [Route(prefix, t.device) for t in tunnels for prefix in t.prefixes]
    return len(lines) + ensure_routes(netns, routes, proto=ROUTE_PROTO)


def _create(device: str, tunnel: GreTunnel, local: str, *, kernel: bool) -> list[str]:
    """The device (no IPv6 link-local address: the tunnel carries only what is routed into it)."""
    if not kernel:
        return [f"tuntap add dev {device} mode tun", f"link set {device} addrgenmode none"]
    key = f" key {tunnel.key}" if tunnel.key is not None else ""
    csum = " csum" if tunnel.checksum else ""
    return [
        f"link add {device} type gre local {local} remote {tunnel.remote} ttl 64{key}{csum}",
        f"link set {device} addrgenmode none",
        f'link set {device} alias "{tunnel.identity(local)}"',
    ]
