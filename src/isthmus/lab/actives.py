"""Who answers for a VIP: the "never two actives" check of gateway failover, sampled every 20 ms.

A gateway node *answers* for a VIP when all three hold:

  1. its namespace routes the VIP into a compartment: the kernel's route lookup for the VIP (RTM_GETROUTE,
     what `ip route get VIP` asks) leaves by a veth `t<vni>` that is up with its carrier (IFF_UP, IFF_LOWER_UP,
     operstate UP);
  2. that compartment's namespace `<prefix><node>-gw<vni>` exists (agents/gateway.py `netns_of`);
  3. the compartment's charon is alive: the PID in `<run_root>/<compartment>/charon.pid` (charon's own file in
     its private /run; else the supervisor's record, linux/supervisor.py) is a process called charon, not a
     zombie, inside that compartment's namespace.

A sample costs no process: one netlink socket per node, opened inside its namespace once (linux/sockets.py),
two small requests per VIP (route lookup, link by index), and a few /proc and /run reads. Each answer carries
its reason, so a timeline of who answers reads as the failover's story.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

from isthmus.lab import tor
from isthmus.lab.fabric import LabState
from isthmus.linux.run import NETNS_DIR
from isthmus.linux.sockets import socket_in

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWROUTE, RTM_GETROUTE = 16, 18, 24, 26
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTA_DST, RTA_OIF = 1, 4
IFLA_IFNAME, IFLA_OPERSTATE = 3, 16
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
IF_OPER_UP = 6
RTNH_F_LINKDOWN = 0x10
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
ATTR = struct.Struct("=HH")
VETH = re.compile(r"t(\d+)")
MAX_VIPS = 1000


class SamplerError(Exception):
    """The kernel did not answer a request (a node namespace that is gone, a netlink socket that broke)."""


@dataclass(frozen=True)
class GatewayNode:
    """Where a gateway node's state is: its namespace, its compartments' names and run directories."""

    name: str
    netns: str
    compartment_prefix: str  # + the VNI: a compartment's namespace
    run_root: Path  # + the compartment's namespace: its run directory (charon.pid, charon.vici)

    @classmethod
    def of(cls, state: LabState, node: str) -> GatewayNode:
        """Gateway node `node` of the lab (as fabric starts its agent: --netns-prefix, --run-dir)."""
        netns = state.topology.netns(node)
        return cls(node, netns, f"{state.prefix}{node}-gw", tor.run_dir(netns))


def lab_gateway_nodes(state: LabState, names: Iterable[str] | None = None) -> list[GatewayNode]:
    """The lab's gateway nodes (or those named)."""
    wanted = list(names) if names is not None else [n.name for n in state.topology.nodes() if n.role == "gateway"]
    return [GatewayNode.of(state, name) for name in wanted]


@dataclass(frozen=True)
class Answer:
    node: str
    vip: str
    answers: bool
    reason: str  # why not (or "answers")
    compartment: str | None = None  # the namespace the node routes the VIP into, if any


# --- netlink, the little a sample needs --------------------------------------------------------------


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + ATTR.size <= len(data):
        length, kind = ATTR.unpack_from(data, offset)
        if length < ATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


class _Netlink:
    """A NETLINK_ROUTE socket inside `netns`, for single request / single answer exchanges."""

    def __init__(self, netns: str, timeout: float = 0.5) -> None:
        self.sock = socket_in(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout)
        self.seq = 0

    def ask(self, kind: int, body: bytes) -> tuple[int, bytes] | int:
        """(answer type, answer body), or the errno the kernel answered with (0: acknowledged, no data)."""
        self.seq += 1
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST, self.seq, 0) + body)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except OSError as error:
                raise SamplerError(f"netlink: {error}") from None
            offset = 0
            while offset + HEADER.size <= len(data):
                length, answer, _flags, seq, _pid = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue  # a late answer to an earlier request
                if answer == NLMSG_ERROR:
                    errno: int = -struct.unpack_from("=i", payload)[0]
                    return errno
                return answer, payload
        raise SamplerError("netlink: no answer within 1 s")

    def route_device(self, vip: str) -> tuple[int, int] | str:
        """(output interface index, route flags) of the kernel's route to `vip`, or why there is none."""
        body = RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0)
        body += ATTR.pack(ATTR.size + 4, RTA_DST) + IPv4Address(vip).packed
        answer = self.ask(RTM_GETROUTE, body)
        if isinstance(answer, int):
            return f"no route to the VIP ({os.strerror(answer)})" if answer else "no route to the VIP"
        kind, payload = answer
        if kind != RTM_NEWROUTE:
            return f"netlink answered type {kind} to a route lookup"
        flags = RTMSG.unpack_from(payload)[8]
        oif = _attrs(payload, RTMSG.size).get(RTA_OIF)
        if oif is None:
            return "the route to the VIP has no device"
        return struct.unpack("=i", oif)[0], flags

    def link(self, index: int) -> tuple[str, int, int] | str:
        """(name, flags, operstate) of interface `index`, or why it cannot be told."""
        answer = self.ask(RTM_GETLINK, IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))
        if isinstance(answer, int):
            return f"interface {index}: {os.strerror(answer)}"
        kind, payload = answer
        if kind != RTM_NEWLINK:
            return f"netlink answered type {kind} to a link request"
        _family, _type, _index, flags, _change = IFINFO.unpack_from(payload)
        attrs = _attrs(payload, IFINFO.size)
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
        operstate = attrs.get(IFLA_OPERSTATE, b"\0")[0]
        return name, flags, operstate

    def close(self) -> None:
        self.sock.close()


# --- one node, one VIP --------------------------------------------------------------------------------


def charon_pid(run_dir: Path) -> int | None:
    """The PID charon wrote in its private /run, else the one the supervisor recorded."""
    with contextlib.suppress(OSError, ValueError):
        text = (run_dir / "charon.pid").read_text().strip()
        if text.isdigit():
            return int(text)
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        pid = json.loads((run_dir / "charon.supervisor.json").read_text()).get("pid")
        return int(pid) if pid else None
    return None


def charon_alive(run_dir: Path, netns_identity: tuple[int, int]) -> str | None:
    """None if the compartment's charon runs (a live process named charon in the compartment's namespace),
    else why not."""
    pid = charon_pid(run_dir)
    if pid is None:
        return f"no charon PID in {run_dir}"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        inside = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return f"charon (pid {pid}) is not running"
    name, state = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
    if name != "charon":
        return f"pid {pid} is {name}, not charon"
    if state in ("Z", "X", "x"):
        return f"charon (pid {pid}) has exited"
    if (inside.st_dev, inside.st_ino) != netns_identity:
        return f"charon (pid {pid}) is not in the compartment's namespace"
    return None


def _answer(node: GatewayNode, netlink: _Netlink, vip: str) -> Answer:
    route = netlink.route_device(vip)
    if isinstance(route, str):
        return Answer(node.name, vip, False, route)
    index, route_flags = route
    link = netlink.link(index)
    if isinstance(link, str):
        return Answer(node.name, vip, False, link)
    device, flags, operstate = link
    veth = VETH.fullmatch(device)
    if veth is None:
        return Answer(node.name, vip, False, f"the VIP is routed via {device}, not into a compartment")
    compartment = f"{node.compartment_prefix}{veth.group(1)}"
    if not flags & IFF_UP or not flags & IFF_LOWER_UP or operstate != IF_OPER_UP or route_flags & RTNH_F_LINKDOWN:
        return Answer(node.name, vip, False, f"{device} is down", compartment)
    try:
        found = os.stat(f"{NETNS_DIR}/{compartment}")
    except OSError:
        return Answer(node.name, vip, False, f"compartment {compartment} does not exist", compartment)
    why = charon_alive(node.run_root / compartment, (found.st_dev, found.st_ino))
    if why is not None:
        return Answer(node.name, vip, False, why, compartment)
    return Answer(node.name, vip, True, "answers", compartment)


class _Asker:
    """The netlink sockets of some nodes, opened on first use and reopened after a failure."""

    def __init__(self, nodes: Sequence[GatewayNode]) -> None:
        self.nodes = list(nodes)
        self.sockets: dict[str, _Netlink] = {}

    def answers(self, vips: Sequence[str]) -> list[Answer]:
        found = []
        for node in self.nodes:
            try:
                netlink = self.sockets.get(node.name) or self.sockets.setdefault(node.name, _Netlink(node.netns))
                found += [_answer(node, netlink, vip) for vip in vips]
            except (OSError, SamplerError) as error:  # e.g. the node's namespace is gone: it answers nothing
                if (broken := self.sockets.pop(node.name, None)) is not None:
                    broken.close()
                found += [Answer(node.name, vip, False, f"node {node.netns}: {error}") for vip in vips]
        return found

    def close(self) -> None:
        for netlink in self.sockets.values():
            netlink.close()
        self.sockets.clear()


def who_answers(nodes: LabState | Sequence[GatewayNode], vips: Iterable[str]) -> dict[str, list[Answer]]:
    """Once: for each VIP, every node's answer (answering or not, and why)."""
    asker = _Asker(_nodes(nodes))
    wanted = _vips(vips)
    try:
        by_vip: dict[str, list[Answer]] = {vip: [] for vip in wanted}
        for answer in asker.answers(wanted):
            by_vip[answer.vip].append(answer)
        return by_vip
    finally:
        asker.close()


def _nodes(nodes: LabState | Sequence[GatewayNode]) -> list[GatewayNode]:
    found = lab_gateway_nodes(nodes) if isinstance(nodes, LabState) else list(nodes)
    if not found:
        raise ValueError("no gateway nodes to sample")
    return found


def _vips(vips: Iterable[str]) -> list[str]:
    wanted = [str(IPv4Address(v)) for v in vips]  # ValueError for anything but an IPv4 address
    if not 0 < len(wanted) <= MAX_VIPS:
        raise ValueError(f"1 to {MAX_VIPS} VIPs, not {len(wanted)}")
    return wanted


# --- sampling -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_ns: int  # monotonic, when the sample started
    cost_ns: int  # how long it took
    answering: dict[str, tuple[str, ...]]  # VIP -> the nodes answering for it


@dataclass(frozen=True)
class Change:
    """From `t_ns` on, `nodes` answer for the VIP; `reasons` says why each other node does not."""

    t_ns: int
    nodes: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)


class ActivesSampler:
    """Samples who answers for `vips` on `nodes` every `period` seconds, in a thread, until stopped or `limit`
    seconds have passed. `with ActivesSampler(lab, [vip]) as s: ...`; then `s.two_actives_seen`,
    `s.samples`, `s.timeline(vip)`."""

    def __init__(self, nodes: LabState | Sequence[GatewayNode], vips: Iterable[str], period: float = 0.02, *,
                 limit: float = 300.0) -> None:  # fmt: skip
        if not 0.001 <= period <= 10:
            raise ValueError(f"period {period} s: from 0.001 to 10")
        self.nodes = _nodes(nodes)
        self.vips = _vips(vips)
        self.period = period
        self.limit = limit
        self.samples: list[Sample] = []
        self.two_actives_seen = 0  # samples in which two or more nodes answered for one VIP
        self.overruns = 0  # samples that took longer than the period
        self.errors: list[str] = []
        self._timelines: dict[str, list[Change]] = {vip: [] for vip in self.vips}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, asker: _Asker) -> Sample:
        started = time.monotonic_ns()
        answers = asker.answers(self.vips)
        cost = time.monotonic_ns() - started
        answering = {vip: tuple(a.node for a in answers if a.vip == vip and a.answers) for vip in self.vips}
        taken = Sample(started, cost, answering)
        self.samples.append(taken)
        if any(len(nodes) > 1 for nodes in answering.values()):
            self.two_actives_seen += 1
        for vip, nodes in answering.items():
            reasons = {a.node: a.reason for a in answers if a.vip == vip and not a.answers}
            timeline = self._timelines[vip]
            if not timeline or timeline[-1].nodes != nodes or timeline[-1].reasons != reasons:
                timeline.append(Change(started, nodes, reasons))
        return taken

    def _run(self) -> None:
        asker = _Asker(self.nodes)
        deadline = time.monotonic() + self.limit
        tick = time.monotonic()
        try:
            while not self._stop.is_set() and tick < deadline:
                try:
                    taken = self.sample(asker)
                except Exception as error:  # recorded, never silent: the test reads `errors`
                    self.errors.append(f"{type(error).__name__}: {error}")
                    taken = None
                if taken is not None and taken.cost_ns > self.period * 1e9:
                    self.overruns += 1
                tick += self.period
                delay = tick - time.monotonic()
                if delay < 0:
                    tick, delay = time.monotonic(), 0.0
                self._stop.wait(delay)
        finally:
            asker.close()

    def start(self) -> ActivesSampler:
        if self._thread is not None:
            raise RuntimeError("a sampler runs once")
        self._thread = threading.Thread(target=self._run, name="actives-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ActivesSampler:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def timeline(self, vip: str) -> list[Change]:
        """The changes of who answers for `vip` (and of why the others do not), the first sample's included."""
        return list(self._timelines[str(IPv4Address(vip))])

    def answering(self, vip: str) -> set[str]:
        """Every node that answered for `vip` in any sample."""
        return {node for s in self.samples for node in s.answering.get(vip, ())}

    def cost_ms(self) -> tuple[float, float]:
        """(median, maximum) cost of a sample, in milliseconds."""
        costs = sorted(s.cost_ns for s in self.samples)
        if not costs:
            return 0.0, 0.0
        return costs[len(costs) // 2] / 1e6, costs[-1] / 1e6
