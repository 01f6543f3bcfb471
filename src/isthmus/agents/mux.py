"""The MUX agent, first form: every VIP of the MUX document as a plain /32 route to its backend.

Stateless: the same document on every MUX. (BGP announcement of the VIPs to the ToR comes with gobgpd.)
"""

from __future__ import annotations

from typing import Any

from isthmus.agents.loop import Outcome
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import ip_json, sysctl


class MuxReconciler:
    def __init__(self, node: str) -> None:
        self.node = node
        self.devices: dict[str, str] = {}  # next hop -> the device it is reached on
        sysctl(None, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})

    def _device(self, next_hop: str) -> str:
        if next_hop not in self.devices:
            [route] = ip_json(None, "route", "get", next_hop)
            self.devices[next_hop] = route["dev"]
        return self.devices[next_hop]

    def reconcile(self, doc: dict[str, Any], *, full: bool) -> Outcome:
        if full:
            self.devices.clear()
        routes = []
        for prefix, vip in doc["vips"].items():
            if vip["nextHop"] and prefix.endswith("/32"):
                routes.append(Route(prefix.removesuffix("/32"), self._device(vip["nextHop"]), vip["nextHop"]))
        changes = ensure_routes(None, routes)
        return Outcome(details={"vips": len(routes), "changes": changes})
