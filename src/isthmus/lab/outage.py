"""Outages measured with sequence-numbered UDP datagrams through tunnels, from this process.

    sender netns (a VM)  ── datagram every `interval`: (stream, direction, seq, sent ns) ──►  receiver netns (a site)
                         ◄── the same the other way, with Stream(reverse=True) ────────────

Each stream has a socket in each namespace (linux/sockets.py: created inside the namespace, used here); one
sender thread serves every stream on one schedule, one receiver thread reads every socket. Send and arrival
times are CLOCK_MONOTONIC nanoseconds (one clock for every namespace of the machine), so `time.monotonic_ns()`
taken by a test (or `probe.mark`) compares with them directly.

A gap is a run of missing sequence numbers; it lasts from the arrival of the last datagram before it to the
arrival of the first after it. Stopping stops the sender first and waits `grace` before the receiver, so
datagrams still in flight are not lost; a report taken while running ignores the last `grace` the same way.
The probe stops itself after `limit` seconds (the receiver `grace` later). The pure part (`find_gaps`,
`first_after`, `outage_after`) is unit-tested (tests/unit/test_outage.py).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from isthmus.linux.sockets import socket_in

FORWARD = "forward"  # sender -> receiver
REVERSE = "reverse"  # receiver -> sender
MAGIC = b"isth"
PACKET = struct.Struct("!4sHBxIQ")  # magic, stream index, direction (0 forward, 1 reverse), seq, sent ns
MAX_STREAMS = 1000
Record = tuple[int, int, int | None]  # (seq, sent ns, arrival ns or None: lost)


@dataclass(frozen=True)
class Stream:
    """One probed path: datagrams from `src_ip` in `sender_netns` to `dst_ip`:`port` in `receiver_netns`
    (with `reverse`, also from there back to the sender's socket)."""

    name: str
    sender_netns: str
    src_ip: str
    receiver_netns: str
    dst_ip: str
    port: int
    reverse: bool = False


@dataclass(frozen=True)
class Gap:
    """A run of lost datagrams, `first_seq` to `last_seq`."""

    first_seq: int
    last_seq: int
    start_ns: int  # arrival of the last datagram before the gap (none before: the first lost one's send time)
    end_ns: int | None  # arrival of the first datagram after it; None: nothing arrived after it
    first_sent_ns: int  # send time of the first lost datagram
    last_sent_ns: int  # send time of the last lost datagram

    @property
    def lost(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def duration_ms(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e6


def find_gaps(records: Iterable[Record]) -> list[Gap]:
    """The gaps of a stream from its (seq, sent ns, arrival ns | None) records, in sequence order."""
    gaps: list[Gap] = []
    before: int | None = None  # arrival of the last received datagram
    first: tuple[int, int] | None = None  # (seq, sent ns) of the open gap's first lost datagram
    last = (0, 0)  # (seq, sent ns) of the open gap's last lost datagram so far
    for seq, sent, arrived in sorted(records):
        if arrived is None:
            first = first or (seq, sent)
            last = (seq, sent)
            continue
        if first is not None:
            gaps.append(Gap(first[0], last[0], first[1] if before is None else before, arrived, first[1], last[1]))
            first = None
        before = arrived
    if first is not None:
        gaps.append(Gap(first[0], last[0], first[1] if before is None else before, None, first[1], last[1]))
    return gaps


def first_after(records: Iterable[Record], t_ns: int) -> int | None:
    """The arrival time of the first datagram sent at or after `t_ns` that arrived (None: none did)."""
    arrivals = [arrived for _seq, sent, arrived in records if sent >= t_ns and arrived is not None]
    return min(arrivals, default=None)


def outage_after(records: Iterable[Record], t_ns: int) -> Gap | None:
    """The first gap holding a datagram sent at or after `t_ns`: for a fault at `t_ns`, the outage it caused
    (its `end_ns` is the first datagram through again; None if none was lost)."""
    return next((gap for gap in find_gaps(records) if gap.last_sent_ns >= t_ns), None)


@dataclass(frozen=True)
class StreamReport:
    name: str
    direction: str  # FORWARD | REVERSE
    records: tuple[Record, ...] = field(repr=False)
    duplicates: int = 0

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def received(self) -> int:
        return sum(1 for _seq, _sent, arrived in self.records if arrived is not None)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def gaps(self) -> list[Gap]:
        return find_gaps(self.records)

    def first_after(self, t_ns: int) -> int | None:
        return first_after(self.records, t_ns)

    def outage_after(self, t_ns: int) -> Gap | None:
        return outage_after(self.records, t_ns)

    def summary(self) -> str:
        gaps = ", ".join(f"{g.lost} lost ({g.duration_ms or 0:.0f} ms)" for g in self.gaps) or "no gaps"
        return f"{self.name} {self.direction}: {self.sent} sent, {self.received} received, {self.lost} lost; {gaps}"


@dataclass(frozen=True)
class Report:
    streams: tuple[StreamReport, ...]
    marks: tuple[tuple[str, int], ...]  # (label, monotonic ns), in the order marked
    stray: int = 0  # datagrams that were not the probe's, or arrived on the wrong socket

    def __getitem__(self, key: str) -> StreamReport:
        """`report["name"]`: the stream's forward direction (`get(name, REVERSE)` for the other)."""
        return self.get(key)

    def get(self, name: str, direction: str = FORWARD) -> StreamReport:
        for stream in self.streams:
            if stream.name == name and stream.direction == direction:
                return stream
        raise KeyError(f"no {direction} stream {name!r}")

    def mark(self, label: str) -> int:
        """The time of the last mark called `label`."""
        found = [t for name, t in self.marks if name == label]
        if not found:
            raise KeyError(f"no mark {label!r}")
        return found[-1]

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.streams)


@dataclass
class _Path:
    """One direction of one stream: what was sent (send ns by seq) and what arrived (seq -> arrival ns)."""

    name: str
    index: int  # of the stream, as the datagrams carry it
    way: int  # 0 forward, 1 reverse
    out: socket.socket
    to: tuple[str, int]
    sent: array[int] = field(default_factory=lambda: array("q"))
    arrived: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def direction(self) -> str:
        return REVERSE if self.way else FORWARD

    def records(self, horizon_ns: int | None) -> tuple[Record, ...]:
        sent = list(self.sent)  # a copy: the sender appends meanwhile
        return tuple((seq, ns, self.arrived.get(seq)) for seq, ns in enumerate(sent)
                     if horizon_ns is None or ns <= horizon_ns)  # fmt: skip


class OutageProbe:
    """Probe `streams` every `interval` seconds until stopped or `limit` seconds have passed.

    `with OutageProbe([Stream(...), ...]) as probe: ...; probe.mark("fault")`, then `probe.report()`
    (during the run or after it)."""

    def __init__(self, streams: Sequence[Stream], interval: float = 0.01, *, grace: float = 0.5,
                 limit: float = 300.0) -> None:  # fmt: skip
        if not 0 < len(streams) <= MAX_STREAMS:
            raise ValueError(f"an outage probe takes 1 to {MAX_STREAMS} streams, not {len(streams)}")
        if len({s.name for s in streams}) != len(streams):
            raise ValueError("stream names must be unique")
        if not 0.001 <= interval <= 10:
            raise ValueError(f"interval {interval} s: from 0.001 to 10")
        self.streams = list(streams)
        self.interval = interval
        self.grace = grace
        self.limit = limit
        self._marks: list[tuple[str, int]] = []
        self._paths: list[_Path] = []
        self._sockets: list[socket.socket] = []
        self._stop_sending = threading.Event()
        self._stop_receiving = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stray = 0
        self._started = False
        self._stopped = False

    # --- running ------------------------------------------------------------------------------------

    def start(self) -> OutageProbe:
        if self._started:
            raise RuntimeError("an outage probe runs once")
        self._started = True
        self._selector = selectors.DefaultSelector()
        try:
            for index, stream in enumerate(self.streams):
                near = self._socket(stream.sender_netns, stream.src_ip, 0)
                far = self._socket(stream.receiver_netns, stream.dst_ip, stream.port)
                forward = _Path(stream.name, index, 0, near, (stream.dst_ip, stream.port))
                self._paths.append(forward)
                self._selector.register(far, selectors.EVENT_READ, forward)
                if stream.reverse:
                    reverse = _Path(stream.name, index, 1, far, (stream.src_ip, near.getsockname()[1]))
                    self._paths.append(reverse)
                    self._selector.register(near, selectors.EVENT_READ, reverse)
        except BaseException:
            self._close()
            raise
        self._deadline = time.monotonic() + self.limit
        self._threads = [threading.Thread(target=self._receive, name="outage-receive", daemon=True),
                         threading.Thread(target=self._send, name="outage-send", daemon=True)]  # fmt: skip
        for thread in self._threads:
            thread.start()
        return self

    def _socket(self, netns: str, address: str, port: int) -> socket.socket:
        sock = socket_in(netns, kind=socket.SOCK_DGRAM)
        self._sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((address, port))
        sock.setblocking(False)
        return sock

    def mark(self, label: str) -> int:
        """Note the time of an event (a fault injected, a fault removed); returns it (monotonic ns)."""
        now = time.monotonic_ns()
        self._marks.append((label, now))
        return now

    def _send(self) -> None:
        """Every `interval`, one datagram per path, on a fixed schedule (late ticks are not made up)."""
        tick = time.monotonic()
        while not self._stop_sending.is_set() and tick < self._deadline:
            for path in self._paths:
                seq = len(path.sent)
                now = time.monotonic_ns()
                path.sent.append(now)
                packet = PACKET.pack(MAGIC, path.index, path.way, seq, now)
                with contextlib.suppress(OSError):  # no route, a dead link for a moment: lost, as counted
                    path.out.sendto(packet, path.to)
            tick += self.interval
            delay = tick - time.monotonic()
            if delay < 0:  # late (a busy machine): carry on from now
                tick, delay = time.monotonic(), 0.0
            self._stop_sending.wait(delay)

    def _receive(self) -> None:
        while not self._stop_receiving.is_set() and time.monotonic() < self._deadline + self.grace:
            for key, _events in self._selector.select(timeout=0.05):
                path: _Path = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                while True:
                    try:
                        data = sock.recv(64)
                    except OSError:  # drained (or an ICMP error on the socket): next
                        break
                    arrived = time.monotonic_ns()
                    if len(data) != PACKET.size:
                        self._stray += 1
                        continue
                    magic, stream, way, seq, _sent = PACKET.unpack(data)
                    if magic != MAGIC or stream != path.index or way != path.way:
                        self._stray += 1
                    elif seq in path.arrived:
                        path.duplicates += 1
                    else:
                        path.arrived[seq] = arrived

    def stop(self) -> None:
        """Stop sending, wait `grace` for what is in flight, stop receiving, close the sockets. Idempotent."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop_sending.set()
        self._threads[1].join(timeout=2)
        time.sleep(self.grace)
        self._stop_receiving.set()
        self._threads[0].join(timeout=2)
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._selector.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> OutageProbe:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started and not self._stopped and self._threads[1].is_alive()

    # --- results ------------------------------------------------------------------------------------

    def report(self) -> Report:
        """Per stream and direction: sent, received, lost, gaps. While running, datagrams sent in the last
        `grace` seconds are left out (they may still be on their way)."""
        done = self._stopped or (self._started and not any(t.is_alive() for t in self._threads))  # or at `limit`
        horizon = None if done else time.monotonic_ns() - int(self.grace * 1e9)
        streams = tuple(StreamReport(p.name, p.direction, p.records(horizon), p.duplicates) for p in self._paths)
        return Report(streams, tuple(self._marks), self._stray)

    def gaps_since(self, name: str, at_ns: int) -> list[Gap]:
        """The runs of datagrams of stream `name` (forward) lost since `at_ns` (a fault, a move)."""
        return [g for g in self.report().get(name).gaps if g.last_sent_ns >= at_ns]

    def closed_gaps_since(self, name: str, at_ns: int, limit: float = 5.0) -> list[Gap]:
        """`gaps_since` once each is over (a datagram through after it), or as they are after `limit` seconds: a
        gap still open has no duration yet."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(g.end_ns is None for g in self.gaps_since(name, at_ns)):
            time.sleep(0.05)
        return self.gaps_since(name, at_ns)

    def wait_outage(self, name: str, at_ns: int, limit: float = 15.0) -> Gap | None:
        """The outage a fault at `at_ns` caused on stream `name` (forward), once it is over: its `end_ns` is the
        first datagram through again. None if none was over within `limit` seconds (or none began)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            gap = self.report().get(name).outage_after(at_ns)
            if gap is not None and gap.end_ns is not None:
                return gap
            time.sleep(0.05)
        return None
