"""strongSwan's charon, one per gateway compartment, configured only over vici.

Each charon runs in its compartment's namespace with its run directory bound over /run (charon's fixed
/run/charon.pid; FACTS: two charons otherwise clash), so its vici socket is RUN_DIR/charon.vici outside.
ESP is the kernel's (XFRM) where the node has it, else charon's userspace kernel-libipsec (a TUN device,
UDP-encapsulated ESP): the node's datapath choice (linux/datapath.py).

`conn_config` is the vici load-conn body of one connection (proposals: model/ipsec.py). Failures are read
from charon's own log (`reason_in`): the reason a connection is NotConnected.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.linux.run import ip_batch, ip_json
from isthmus.linux.supervisor import Daemon, socket_answers
from isthmus.model.documents import Connection
from isthmus.model.ipsec import (
    DEFAULT_ESP,
    DEFAULT_ESP_LIFETIME_S,
    DEFAULT_IKE,
    IKE_LIFETIME_S,
    esp_proposal,
    ike_proposal,
)

CHARON = "/usr/lib/ipsec/charon"
MAIN_FIRST = 200  # a compartment's rule before charon's table 220 (ROUTING_TABLE): its own routes first
SOCKET = "charon.vici"
LOG = "charon.log"
ROUTING_TABLE = 220


def strongswan_conf(libipsec: bool) -> str:
    """The charon configuration as charon sees it (/run is its run directory)."""
    # kernel-libipsec must come before kernel-netlink, or XFRM is the ESP backend (FACTS: the order matters).
    kernel = "kernel-libipsec kernel-netlink" if libipsec else "kernel-netlink"
    plugins = f"random nonce openssl aes sha1 sha2 hmac gmp curve25519 kdf {kernel} socket-default vici"
    return f"""charon {{
  load = {plugins}
  install_routes = yes
  routing_table = {ROUTING_TABLE}
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  filelog {{
    reason {{
      path = /run/{LOG}
      time_format = %s
      ike_name = yes
      flush_line = yes
      default = 0
      ike = 1
      cfg = 1
      knl = 1
    }}
  }}
  plugins {{
    vici {{ socket = unix:///run/{SOCKET} }}
    kernel-libipsec {{ mtu = 1400 }}
  }}
}}
"""


def charon_daemon(netns: str, run_dir: Path, *, libipsec: bool) -> Daemon:
    return Daemon(
        "charon",
        (CHARON,),
        run_dir,
        netns,
        configs={"strongswan.conf": strongswan_conf(libipsec)},
        env={"STRONGSWAN_CONF": "/run/strongswan.conf"},  # the path as charon sees it
        private_run=True,
        stale=(run_dir / SOCKET, run_dir / "charon.pid"),
        probe=lambda: socket_answers(run_dir / SOCKET),
    )


def ensure_main_first(netns: str) -> bool:
    """The compartment's own specific routes (its VNet's VMs, links, tunnels) win over charon's table 220, whose
    default route a route-based child (any-to-any: BGP) puts into the tunnel: else the VNet's own traffic coming
    out of the tunnel would be sent back into it. The main table's default route is left to table 220 (which
    throws the sites' own addresses back to it). True if the rule had to be added."""
    if any(rule.get("priority") == MAIN_FIRST for rule in ip_json(netns, "rule", "show")):
        return False
    ip_batch(netns, [f"rule add priority {MAIN_FIRST} lookup main suppress_prefixlength 0"])
    return True


def conn_name(connection_id: str) -> str:
    """charon's name for a connection: short, stable, free of the ARM id's slashes."""
    return "c" + hashlib.sha256(connection_id.lower().encode()).hexdigest()[:12]


def conn_config(connection: Connection, vip: str, local_ts: Sequence[str]) -> dict[str, Any]:
    """vici's load-conn body for one IPsec connection of a route-based gateway (identity: its VIP)."""
    assert connection.remote_address is not None
    remote = str(connection.remote_address)
    policies = connection.ipsec_policies
    # With BGP the site's prefixes are learned, not declared: route-based, any-to-any, as Azure's gateways are
    # (charon routes everything but the site's own address into the tunnel; the routes decide).
    remote_ts = (
        ["0.0.0.0/0"] if connection.enable_bgp else [str(p) for p in connection.remote_prefixes] or ["0.0.0.0/0"]
    )
    selectors = connection.traffic_selector_policies
    if connection.use_policy_based_traffic_selectors and selectors:  # the site's own pairs, as one child
        local_ts = sorted({str(p) for t in selectors for p in t.local})
        remote_ts = sorted({str(p) for t in selectors for p in t.remote})
    child: dict[str, Any] = {
        "local_ts": list(local_ts),
        "remote_ts": remote_ts,
        "esp_proposals": [esp_proposal(p) for p in policies] if policies else list(DEFAULT_ESP),
        "mode": "tunnel",
        "rekey_time": f"{policies[0].sa_life_time_seconds if policies else DEFAULT_ESP_LIFETIME_S}s",
        "dpd_action": "restart",
        "close_action": "none",
        "start_action": "none",  # the agent initiates, with its own backoff
    }
    if policies:
        child["rekey_bytes"] = str(policies[0].sa_data_size_kilobytes * 1024)
    dpd = connection.dpd_timeout_seconds or 45
    return {
        conn_name(connection.id): {
            "version": "2",
            "local_addrs": [vip],
            "remote_addrs": [remote],
            "proposals": [ike_proposal(p) for p in policies] if policies else list(DEFAULT_IKE),
            "rekey_time": f"{IKE_LIFETIME_S}s",
            "dpd_delay": f"{max(1, dpd // 3)}s",
            "dpd_timeout": f"{dpd}s",
            "keyingtries": "1",
            "unique": "replace",
            "mobike": "no",
            "local": {"auth": "psk", "id": vip},
            "remote": {"auth": "psk", "id": remote},
            "children": {conn_name(connection.id): child},
        }
    }


def initiates(connection: Connection) -> bool:
    return (connection.connection_mode or "Default") != "ResponderOnly"


@contextmanager
def session(run_dir: Path, timeout: float = 5.0) -> Iterator[Any]:
    """A vici session with the charon of `run_dir`."""
    import vici  # the gateway agent's alone

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(run_dir / SOCKET))
        yield vici.Session(sock)
    finally:
        sock.close()


@dataclass(frozen=True)
class Tunnel:
    """One connection's SAs as charon reports them."""

    state: str  # the IKE SA's: ESTABLISHED, CONNECTING, … ("" when there is none)
    children: tuple[tuple[str, str, str, int, int], ...]  # (state, local ts, remote ts, bytes in, bytes out)
    established_s: int | None  # seconds since the IKE SA was established
    summary: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the IKE SA, for getikesas
    unique_id: str = ""  # charon's number for the IKE SA: a new one is a new SA
    packets: tuple[int, int] = (0, 0)  # (in, out), over its child SAs

    @property
    def connected(self) -> bool:
        return self.state == "ESTABLISHED" and any(c[0] == "INSTALLED" for c in self.children)

    @property
    def bytes_in(self) -> int:
        return sum(c[3] for c in self.children)

    @property
    def bytes_out(self) -> int:
        return sum(c[4] for c in self.children)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tunnels(sas: Iterable[Mapping[str, Any]]) -> dict[str, Tunnel]:
    """list-sas answers -> per connection name its best IKE SA (an established one over a connecting one)."""
    out: dict[str, Tunnel] = {}
    for entry in sas:
        for name, ike in entry.items():
            children = tuple(
                (
                    _text(c.get("state", "")),
                    " ".join(_text(t) for t in c.get("local-ts", [])),
                    " ".join(_text(t) for t in c.get("remote-ts", [])),
                    int(_text(c.get("bytes-in", 0))),
                    int(_text(c.get("bytes-out", 0))),
                )
                for c in (ike.get("child-sas") or {}).values()
            )
            established = ike.get("established")
            packets = tuple(sum(int(_text(c.get(key, 0))) for c in (ike.get("child-sas") or {}).values())
                            for key in ("packets-in", "packets-out"))  # fmt: skip
            tunnel = Tunnel(_text(ike.get("state", "")), children, int(_text(established)) if established else None,
                            _summary(ike), _text(ike.get("uniqueid", "")), (packets[0], packets[1]))  # fmt: skip
            held = out.get(_text(name))
            if held is None or (tunnel.connected and not held.connected):
                out[_text(name)] = tunnel
    return out


IKE_FIELDS = {
    "localEndpoint": "local-host", "localPort": "local-port", "remoteEndpoint": "remote-host",
    "remotePort": "remote-port", "state": "state", "encryption": "encr-alg", "encryptionKeySize": "encr-keysize",
    "integrity": "integ-alg", "prf": "prf-alg", "dhGroup": "dh-group", "establishedSeconds": "established",
    "rekeyInSeconds": "rekey-time",
}  # fmt: skip
CHILD_FIELDS = {
    "state": "state", "encapsulation": "encap", "encryption": "encr-alg", "encryptionKeySize": "encr-keysize",
    "integrity": "integ-alg", "bytesIn": "bytes-in", "bytesOut": "bytes-out", "packetsIn": "packets-in",
    "packetsOut": "packets-out", "rekeyInSeconds": "rekey-time", "lifetimeSeconds": "life-time",
}  # fmt: skip


def _summary(ike: Mapping[str, Any]) -> dict[str, Any]:
    """An IKE SA and its child SAs in Azure-like names (what getikesas returns), without SPIs or keys."""
    out: dict[str, Any] = {k: _text(ike[v]) for k, v in IKE_FIELDS.items() if v in ike}
    out["childSas"] = [
        {
            **{k: _text(c[v]) for k, v in CHILD_FIELDS.items() if v in c},
            "localTrafficSelectors": [_text(t) for t in c.get("local-ts", [])],
            "remoteTrafficSelectors": [_text(t) for t in c.get("remote-ts", [])],
        }
        for c in list((ike.get("child-sas") or {}).values())[:4]
    ]
    return out


# charon's words for why a connection is down, most telling first.
REASONS = (
    ("AUTHENTICATION_FAILED", "authentication failed: the pre-shared keys differ"),
    ("no shared key found", "authentication failed: no pre-shared key for the peer's identity"),
    ("tried to authenticate", "authentication failed: the pre-shared keys differ"),
    ("NO_PROPOSAL_CHOSEN", "no proposal chosen: the site offers nothing this connection allows"),
    ("no acceptable proposal", "no proposal chosen: the site offers nothing this connection allows"),
    ("TS_UNACCEPTABLE", "traffic selectors unacceptable: the prefixes on the two sides do not match"),
    ("peer not responding", "peer unreachable: no answer from the site's gateway"),
    ("giving up after", "peer unreachable: no answer from the site's gateway"),
)


def reason_in(lines: Iterable[str]) -> dict[str, str]:
    """Per connection name, the reason of the last failure its log lines tell of."""
    out: dict[str, str] = {}
    for line in lines:
        start = line.find("<")
        end = line.find("|", start)
        if start < 0 or end < 0:
            continue
        name = line[start + 1 : end]
        for needle, reason in REASONS:
            if needle in line:
                out[name] = reason
                break
    return out
