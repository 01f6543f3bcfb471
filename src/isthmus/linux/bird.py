"""BIRD 2 as the MUX's BGP speaker: it learns this node's kernel /32 (/128) routes and announces them to every
peer with next hop self, packed into few UPDATEs also on a live session (gobgpd 3.10 sends one per path there).

    speaker.configure(asn, router_id, peers)   # the config file rewritten, then `configure` on the control socket
    speaker.announce(desired)                   # the kernel routes BIRD learns made to announce exactly `desired`

Kernel routes by owner (one owner each, told apart by protocol number):
  - proto 77: the MUX agent's forwarding routes, `VIP via BACKEND` (linux/routes.py ensure_routes);
  - proto 78: this speaker's announce routes, `blackhole VIP proto 78 metric 4000`, one per desired VIP.
The speaker's route is the announcement, with or without a backend: announce() never has to know the forwarding
routes, so a backend that goes away between two calls cannot take its VIP's announcement with it. Its metric is
above any forwarding route's (IPv4 0, IPv6 1024), so a VIP with a backend is forwarded and one without is dropped
here instead of bouncing back to the ToR. BIRD keeps the lowest-metric kernel route of a prefix before filtering,
so it imports both protocols and announces each prefix once; a withdrawal is the speaker's route removed (and the
agent's, which the agent removes itself).

BIRD runs in the foreground (`bird_argv`, `start_bird`) with its config, control socket and pid file in one
directory. The config file carries its own inputs on its first line (ASN, router id, peers), so a speaker object
that finds a BIRD running (an agent restarted) changes nothing that is already so; it is the speaker's to
rewrite, so whoever starts BIRD must not treat a changed config as a reason to restart it. `netlink rx buffer`
holds a burst of 100,000 route notifications: with BIRD's default the kernel drops some and BIRD waits for its
next scan.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import IO

from isthmus.linux.blackholes import change_blackholes, describe
from isthmus.linux.routes import PROTO as FORWARDING_PROTO
from isthmus.linux.run import LinuxError, ip_json
from isthmus.linux.speaker import DOWN, SESSION_STATES, SESSIONS_TIMEOUT, Network, Peer
from isthmus.linux.supervisor import Daemon

log = logging.getLogger(__name__)

ANNOUNCE_PROTO = 78
ANNOUNCE_METRIC = 4000
NETLINK_BUFFER = 67108864  # 64 MiB
CONFIG, SOCKET, PID = "bird.conf", "bird.ctl", "bird.pid"
HEADER = "# isthmus BirdSpeaker "


class BirdError(Exception):
    """BIRD refused a command; the message is its own."""


class BirdDown(BirdError):
    """Nothing answers on BIRD's control socket."""


@dataclass(frozen=True)
class BirdState:
    """What the config is made from."""

    asn: int | None = None
    router_id: str | None = None
    peers: tuple[Peer, ...] = field(default_factory=tuple)


def render_config(state: BirdState) -> str:
    """BIRD's whole config for `state`. Without an identity there are no sessions (BIRD still needs a router id
    to start: a placeholder)."""
    inputs = {"asn": state.asn, "routerId": state.router_id, "peers": [[p.address, p.asn] for p in state.peers]}
    learned = f"krt_source = {FORWARDING_PROTO} || krt_source = {ANNOUNCE_PROTO}"
    lines = [
        HEADER + json.dumps(inputs, separators=(",", ":")),
        "log stderr { info, remote, warning, error, auth, fatal, bug };",
        f"router id {state.router_id or 1};",
        "",
        "protocol device {",
        "  scan time 10;",
        "}",
    ]
    for name, family in (("k4", "ipv4"), ("k6", "ipv6")):
        lines += [
            "",
            f"protocol kernel {name} {{",
            f"  {family} {{ import where {learned}; export none; }};",
            "  learn;",
            "  scan time 10;",
            f"  netlink rx buffer {NETLINK_BUFFER};",
            "}",
        ]
    for peer in state.peers if state.asn is not None else ():
        family = "ipv6" if ip_address(peer.address).version == 6 else "ipv4"
        lines += [
            "",
            f"protocol bgp {peer_protocol(peer)} {{",
            f"  local as {state.asn};",
            f"  neighbor {peer.address} as {peer.asn};",
            "  connect delay time 1;",
            "  connect retry time 1;",
            "  error wait time 1, 10;",
            "  graceful restart off;",  # a dead speaker's routes leave the ToR at once, as gobgpd's do
            f"  {family} {{ import none; export all; next hop self; }};",
            "}",
        ]
    return "\n".join(lines) + "\n"


def peer_protocol(peer: Peer) -> str:
    """BIRD's protocol name for a session: peer_198_18_0_1."""
    return "peer_" + peer.address.replace(".", "_").replace(":", "_")


def session_states(lines: Iterable[str], protocols: Mapping[str, str]) -> dict[str, str]:
    """Each peer's session state from `show protocols` lines (Name Proto Table State Since Info); `protocols`:
    BIRD's protocol name -> the peer's address. The BGP state is the first word of Info, which names no state
    when the protocol is down (it holds the last error then) or starting without one: Idle. A peer BIRD does
    not list (its config not loaded yet) is Down."""
    states = dict.fromkeys(protocols.values(), DOWN)
    for line in lines:
        columns = line.split(maxsplit=5)
        if len(columns) >= 5 and columns[0] in protocols and columns[1] == "BGP":
            info = columns[5] if len(columns) == 6 else ""
            states[protocols[columns[0]]] = _session_state(columns[3], info)
    return states


def _session_state(protocol_state: str, info: str) -> str:
    first = info.split(maxsplit=1)[0] if info.strip() else ""
    # BIRD's other words there (Passive, Close) are Idle states of the FSM too
    return first if protocol_state != "down" and first in SESSION_STATES else "Idle"


def read_state(config: str) -> BirdState:
    """The inputs a config was rendered from (its first line); an empty state if it has none."""
    first = config.partition("\n")[0]
    if not first.startswith(HEADER):
        return BirdState()
    try:
        inputs = json.loads(first.removeprefix(HEADER))
        peers = tuple(Peer(str(address), int(asn)) for address, asn in inputs["peers"])
        return BirdState(inputs["asn"], inputs["routerId"], peers)
    except (ValueError, KeyError, TypeError):
        return BirdState()


def ask_bird(path: Path, command: str, timeout: float = 10.0) -> list[str]:
    """One command over BIRD's control socket: the reply's lines without their codes. BirdError if BIRD reports
    an error (codes 8xxx and 9xxx); OSError if nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with sock.makefile("rb") as stream:
            _reply(stream)  # the greeting
            sock.sendall(command.encode() + b"\n")
            return _reply(stream)


def _reply(stream: IO[bytes]) -> list[str]:
    """Lines are `CODE-text` (more follow), ` text` (same code, more follow) or `CODE text` (the last)."""
    lines: list[str] = []
    errors: list[str] = []
    while True:
        raw = stream.readline()
        if not raw:
            raise BirdError("BIRD closed the control connection")
        line = raw.decode(errors="replace").rstrip("\n")
        code, mark = line[:4], line[4:5]
        if not (code.isdigit() and mark in ("-", " ")):
            lines.append(line[1:])
            continue
        (errors if code[0] in "89" else lines).append(line[5:])
        if mark == " ":
            if errors:
                raise BirdError("; ".join(errors))
            return lines


def bird_argv(run_dir: Path) -> tuple[str, ...]:
    """BIRD's command line: in the foreground (the caller holds the process), its config, control socket and
    pid file in `run_dir`. A control socket left behind by a killed BIRD is replaced by the new one."""
    return ("bird", "-f", "-c", str(run_dir / CONFIG), "-s", str(run_dir / SOCKET), "-P", str(run_dir / PID))


def ensure_config(run_dir: Path) -> None:
    """A config for BIRD to start with if there is none yet (no sessions); the speaker rewrites it later."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG).exists():
        _write(run_dir / CONFIG, render_config(BirdState()))


def bird_daemon(run_dir: Path, netns: str | None = None, *, probe: Callable[[], bool] | None = None) -> Daemon:
    """BIRD (`bird_argv`) in `netns` for the supervisor, with the config that is there or a first one. The
    config is not the supervisor's to write (the speaker rewrites it and tells BIRD over its socket), so a
    peer change never restarts BIRD. `probe`: typically `BirdSpeaker(run_dir).ready`."""
    ensure_config(run_dir)
    return Daemon("bird", bird_argv(run_dir), run_dir, netns, probe=probe)


def _write(path: Path, text: str) -> None:
    """Replace `path` at once: a BIRD (re)started at any moment reads a whole config."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    partial.replace(path)


class BirdSpeaker:
    """The Speaker interface (linux/speaker.py) on a BIRD whose files are in `run_dir`; kernel routes are changed
    in `netns` (None: this process's namespace, where BIRD runs too)."""

    def __init__(self, run_dir: Path, netns: str | None = None, timeout: float = 10.0) -> None:
        self.run_dir = run_dir
        self.netns = netns
        self.timeout = timeout
        self.last: set[Network] | None = None  # the announce routes announce() last left in the kernel

    @property
    def config(self) -> Path:
        return self.run_dir / CONFIG

    @property
    def socket(self) -> Path:
        return self.run_dir / SOCKET

    def close(self) -> None:
        """Nothing is held between calls (one control connection per command)."""

    def ready(self) -> bool:
        try:
            ask_bird(self.socket, "show status", 1.0)
            return True
        except (OSError, BirdError):
            return False

    def command(self, command: str) -> list[str]:
        try:
            return ask_bird(self.socket, command, self.timeout)
        except OSError as error:
            raise BirdDown(f"BIRD at {self.socket} does not answer: {error}") from error

    def configure(self, asn: int, router_id: str, peers: Sequence[Peer]) -> int:
        return self.start(asn, router_id) + self.set_peers(peers)

    def start(self, asn: int, router_id: str) -> int:
        """Set the identity (the sessions restart if it changes; the peers are kept); 1 if it changed."""
        state = self.state()
        self._apply(BirdState(asn, router_id, state.peers))
        return int((state.asn, state.router_id) != (asn, router_id))

    def set_peers(self, peers: Sequence[Peer]) -> int:
        """Make the sessions exactly `peers` (the others keep running); returns sessions added + removed."""
        state = self.state()
        wanted = tuple(sorted(set(peers), key=lambda p: (p.address, p.asn)))
        self._apply(BirdState(state.asn, state.router_id, wanted))
        return len(set(state.peers) ^ set(wanted))

    def state(self) -> BirdState:
        try:
            return read_state(self.config.read_text())
        except FileNotFoundError:
            return BirdState()

    def _apply(self, state: BirdState) -> None:
        """Write the config for `state` and have BIRD load it; a config BIRD refuses is put back as it was."""
        text = render_config(state)
        try:
            before: str | None = self.config.read_text()
        except FileNotFoundError:
            before = None
        if text == before:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write(self.config, text)
        try:
            self.command("configure")
        except BirdDown:
            raise  # the file stays: a BIRD started later reads it
        except BirdError:
            if before is not None:
                _write(self.config, before)
            raise

    def announce(
        self, desired: Collection[Network], *, verify: bool = True, changed: Iterable[Network] | None = None
    ) -> tuple[int, int]:
        """Make the announce routes exactly `desired`; returns (added, withdrawn). verify=False diffs against
        what this object left last (reading 100,000 routes costs a fraction of a second), and with `changed`
        (the networks that may differ since the last call) only those are looked at; verify=True reads the
        kernel and so also puts back what changed behind its back."""
        if not verify and self.last is not None and changed is not None:
            looked_at = set(changed)
            missing = {n for n in looked_at if n in desired and n not in self.last}
            extra = {n for n in looked_at if n not in desired and n in self.last}
            try:
                self._change(missing, extra)
                self.last.difference_update(extra)
                self.last.update(missing)
                return len(missing), len(extra)
            except LinuxError:  # refused, or answers lost: the whole set, from the kernel
                verify = True
        wanted = set(desired)
        current = self.originated() if verify or self.last is None else self.last
        missing, extra = wanted - current, current - wanted
        try:
            self._change(missing, extra)
        except LinuxError:  # refused (changed behind this object's back?) or answers lost: read, then redo
            current = self.originated()
            missing, extra = wanted - current, current - wanted
            self._change(missing, extra)
        self.last = wanted
        return len(missing), len(extra)

    def _change(self, add: set[Network], remove: set[Network]) -> None:
        failed = change_blackholes(self.netns, list(add), list(remove), protocol=ANNOUNCE_PROTO, metric=ANNOUNCE_METRIC)
        failed = [(network, code) for network, code in failed if not (code == errno.ESRCH and network in remove)]
        if failed:  # a route to remove that is gone already is no failure
            raise LinuxError(describe(failed))

    def originated(self) -> set[Network]:
        """The announce routes in the kernel."""
        out: set[Network] = set()
        for family in ("-4", "-6"):
            for route in ip_json(self.netns, family, "route", "show", "table", "main", "proto", str(ANNOUNCE_PROTO)):
                if route.get("type") == "blackhole" and route.get("metric") == ANNOUNCE_METRIC:
                    out.add(ip_network(route["dst"]))
        return out

    def sessions(self) -> dict[str, str]:
        """Each configured peer's session state (`session_states`), peers known by the protocol names this
        speaker gave them. TimeoutError if BIRD is too busy to answer within SESSIONS_TIMEOUT."""
        protocols = {peer_protocol(peer): peer.address for peer in self.state().peers}
        try:
            lines = ask_bird(self.socket, "show protocols", SESSIONS_TIMEOUT)
        except TimeoutError:  # an OSError too, but BIRD is there: it accepted the connection
            raise
        except OSError as error:
            raise BirdDown(f"BIRD at {self.socket} does not answer: {error}") from error
        return session_states(lines, protocols)

    def announced(self) -> set[Network]:
        """The prefixes in BIRD's tables: what it announces to every peer of their family."""
        out: set[Network] = set()
        for line in self.command("show route"):
            if line and not line[0].isspace() and not line.startswith("Table "):
                with contextlib.suppress(ValueError):
                    out.add(ip_network(line.split(maxsplit=1)[0]))
        return out

    def count(self) -> int:
        """How many prefixes BIRD announces (cheap: no listing)."""
        last = self.command("show route count")[-1]  # "Total: 2 of 2 routes for 2 networks in 2 tables"
        return int(last.split(" networks")[0].rsplit(maxsplit=1)[-1])
