"""Checksum offload of a device, through the SIOCETHTOOL ioctl (ethtool's own, without the ethtool binary)."""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from isthmus.linux.sockets import socket_in

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # set transmit checksum offload


def set_tx_checksum(netns: str | None, device: str, enabled: bool) -> None:
    """Turn `device`'s transmit checksum offload on or off: off, the kernel finishes every checksum a packet
    leaving through it still owes (a packet that crossed a virtual wire with its checksum left for a NIC to
    fill in leaves complete, as a real wire would carry it)."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(enabled)), 8)
    request = struct.pack("16sP", device.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with socket_in(netns, kind=socket.SOCK_DGRAM) if netns else socket.socket(type=socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
