"""Blackhole host routes (/32, /128) added and removed over rtnetlink in batches.

Many requests go out per send and none asks for an acknowledgement (the kernel still answers a request that
fails), so 100,000 routes cost ~0.3 s of kernel time here where `ip -batch`, which waits for an answer to each
request, costs ~1.2 s. Each request is a fixed layout (nlmsghdr, rtmsg, RTA_DST, RTA_PRIORITY), packed with one
struct format per family.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence

from isthmus.linux.run import LinuxError
from isthmus.linux.sockets import socket_in
from isthmus.linux.speaker import Network

RTM_NEWROUTE, RTM_DELROUTE, NLMSG_ERROR = 24, 25, 2
NLM_F_REQUEST, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x100, 0x400
RTN_BLACKHOLE, RT_TABLE_MAIN = 6, 254
RTA_DST, RTA_PRIORITY = 1, 6
SOL_NETLINK, NETLINK_CAP_ACK, SO_RCVBUFFORCE = 270, 10, 33  # not in Python's socket module
PER_SEND = 256
# nlmsghdr (len, type, flags, seq, pid), rtmsg (family, dst_len, src_len, tos, table, protocol, scope, type,
# flags), RTA_DST (len, type, address), RTA_PRIORITY (len, type, metric)
LAYOUT = {4: struct.Struct("=IHHII8BI HH4s HHI"), 6: struct.Struct("=IHHII8BI HH16s HHI")}
ERROR = struct.Struct("=IHHIIi IHHII")  # nlmsghdr, error, the failed request's nlmsghdr (capped: no payload)


def change_blackholes(netns: str | None, add: Sequence[Network], remove: Sequence[Network], *, protocol: int,
                      metric: int) -> list[tuple[Network, int]]:  # fmt: skip
    """Remove then add (replace) `blackhole NETWORK proto PROTOCOL metric METRIC` routes in `netns`'s main table;
    returns the requests the kernel refused, as (network, errno). LinuxError if some answers were lost."""
    requests = [(network, RTM_DELROUTE, NLM_F_REQUEST) for network in remove]
    requests += [(network, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE) for network in add]
    if not requests:
        return []
    family = socket.AF_NETLINK
    sock = socket.socket(family, socket.SOCK_RAW, 0) if netns is None else socket_in(netns, family, socket.SOCK_RAW)
    failed: list[tuple[Network, int]] = []
    with sock:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        sock.bind((0, 0))
        for start in range(0, len(requests), PER_SEND):
            sock.send(b"".join(_encode(requests, start, protocol, metric)))
            failed += [(requests[seq][0], code) for seq, code in _refusals(sock)]  # answered during the send
    return failed


def _encode(requests: list[tuple[Network, int, int]], start: int, protocol: int, metric: int) -> Iterator[bytes]:
    for seq in range(start, min(start + PER_SEND, len(requests))):
        network, kind, flags = requests[seq]
        version, length = network.version, network.max_prefixlen
        layout = LAYOUT[version]
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        yield layout.pack(layout.size, kind, flags, seq, 0, family, length, 0, 0, RT_TABLE_MAIN, protocol, 0,
                          RTN_BLACKHOLE, 0, 4 + length // 8, RTA_DST, network.network_address.packed, 8, RTA_PRIORITY,
                          metric)  # fmt: skip


def _refusals(sock: socket.socket) -> Iterator[tuple[int, int]]:
    """(request seq, errno) of the error answers waiting on `sock`."""
    while True:
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno == errno.ENOBUFS:
                raise LinuxError("rtnetlink: answers to route requests were lost (receive buffer full)") from error
            raise
        offset = 0
        while offset + ERROR.size <= len(data):
            length, kind, *_, code, _, _, _, seq, _ = ERROR.unpack_from(data, offset)
            if kind == NLMSG_ERROR and code:
                yield seq, -code
            offset += max(length, 16)


def describe(failed: list[tuple[Network, int]]) -> str:
    network, code = failed[0]
    return f"rtnetlink refused {len(failed)} route requests, e.g. {network}: {os.strerror(code)}"
