"""Traffic between lab namespaces, from this process: sockets are created inside a namespace and used
here (linux/sockets.py), so a probe costs microseconds, not a process. Every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from isthmus.linux.run import in_netns
from isthmus.linux.sockets import socket_in


def ping(netns: str, address: str, timeout: float = 1.0, count: int = 1) -> bool:
    command = in_netns(netns, ["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), "-i", "0.2", address])
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def tcp_open(netns: str, address: str, port: int, timeout: float = 1.0, source_port: int = 0) -> bool:
    """Does a TCP handshake to address:port complete (an accept somewhere answers)?"""
    sock = socket_in(netns)
    sock.settimeout(timeout)
    try:
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", source_port))
        sock.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def iperf_gbps(server_ns: str, address: str, client_ns: str, seconds: float, port: int = 5201) -> float:
    """Gbit/s received by an iperf3 server in `server_ns` on `address` from one TCP stream of `client_ns`."""
    server = subprocess.Popen(in_netns(server_ns, ["iperf3", "-s", "-1", "-B", address, "-p", str(port)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)
        out = subprocess.run(
            in_netns(client_ns, ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]),
            capture_output=True, text=True, timeout=seconds + 20, check=True,
        )  # fmt: skip
        return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.kill()
        server.wait()


@dataclass
class Server:
    """TCP and UDP echo on one port in a namespace; remembers the peers it saw."""

    netns: str
    address: str
    port: int
    peers: list[tuple[str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Server:
        self.tcp = socket_in(self.netns)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.address, self.port))
        self.tcp.listen(64)
        self.tcp.settimeout(0.1)
        self.udp = socket_in(self.netns, kind=socket.SOCK_DGRAM)
        self.udp.bind((self.address, self.port))
        self.udp.settimeout(0.1)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._tcp, self._udp)]
        for thread in self.threads:
            thread.start()
        return self

    def _tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                continue
            self.peers.append(peer)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def _udp(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65536)
            except OSError:
                continue
            self.peers.append(peer)
            self.udp.sendto(data, peer)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=1)
        self.tcp.close()
        self.udp.close()


@contextmanager
def server(netns: str, address: str, port: int) -> Iterator[Server]:
    running = Server(netns, address, port).start()
    try:
        yield running
    finally:
        running.close()


def tcp_echo(netns: str, address: str, port: int, timeout: float = 1.0) -> bool:
    sock = socket_in(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        sock.sendall(b"isthmus")
        return sock.recv(16) == b"isthmus"
    except OSError:
        return False
    finally:
        sock.close()


def udp_echo(netns: str, address: str, port: int, timeout: float = 0.5, source_port: int = 0) -> bool:
    """Does a datagram reach address:port and its answer come back?"""
    sock = socket_in(netns, kind=socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        if source_port:
            sock.bind(("0.0.0.0", source_port))
        sock.sendto(b"isthmus", (address, port))
        data, _peer = sock.recvfrom(16)
        return data == b"isthmus"
    except OSError:
        return False
    finally:
        sock.close()


@dataclass
class LongFlow:
    """A TCP connection exchanging a message every `interval` seconds; counts round trips and failures."""

    netns: str
    address: str
    port: int
    interval: float = 0.02
    round_trips: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> LongFlow:
        self.sock = socket_in(self.netns)
        self.sock.settimeout(2.0)
        self.sock.connect((self.address, self.port))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sock.sendall(b"ping")
                if self.sock.recv(16) != b"ping":
                    self.failures.append("short answer")
                    return
                self.round_trips += 1
            except OSError as error:
                self.failures.append(f"{type(error).__name__}: {error} after {self.round_trips} round trips")
                return
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=3)
        self.sock.close()


@dataclass
class UdpStream:
    """Datagrams to address:port every `interval` seconds, round-robin from `sources` source ports (so
    ECMP spreads them over every path), each answered by an echo server; at most `limit` seconds. Says
    how long traffic was lost after a fault."""

    netns: str
    address: str
    port: int
    sources: int = 32
    interval: float = 0.005
    limit: float = 120.0
    sent: list[float] = field(default_factory=list)  # send time of each sequence number
    answered: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> UdpStream:
        self.socks = [socket_in(self.netns, kind=socket.SOCK_DGRAM) for _ in range(self.sources)]
        for sock in self.socks:
            sock.setblocking(False)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._receive)]
        for thread in self.threads:
            thread.start()
        return self

    def _send(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            seq = len(self.sent)
            self.sent.append(time.monotonic())
            with contextlib.suppress(OSError):  # e.g. no route for a moment: counted as lost
                self.socks[seq % self.sources].sendto(seq.to_bytes(4, "big"), (self.address, self.port))
            time.sleep(self.interval)

    def _receive(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.1)
            for sock in ready:
                try:
                    data = sock.recv(16)
                except OSError:
                    continue
                self.answered.add(int.from_bytes(data[:4], "big"))

    def lost_after(self, fault: float, grace: float = 1.0) -> tuple[int, float]:
        """(datagrams lost, seconds from `fault` to the last lost one) among those sent after `fault`,
        ignoring the last `grace` seconds (answers may still be on their way)."""
        horizon = self.sent[-1] - grace if self.sent else fault
        lost = [t for seq, t in enumerate(self.sent) if fault <= t <= horizon and seq not in self.answered]
        return len(lost), (max(lost) - fault if lost else 0.0)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=2)
        for sock in self.socks:
            sock.close()
