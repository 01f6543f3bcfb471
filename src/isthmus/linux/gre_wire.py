"""The GRE header (RFC 2784, with RFC 2890's key), as the userspace datapath writes and reads it. Pure.

     0                   1                   2                   3
    |C| |K|S| Reserved0       | Ver |         Protocol Type         |
    |      Checksum (optional)      |       Reserved1 (optional)    |
    |                         Key (optional)                        |
    |                 Sequence Number (optional, never sent)        |

Version is 0; the protocol type is the inner packet's EtherType (IPv4 0x0800, IPv6 0x86DD). The checksum,
when present, is the internet checksum of the GRE header and payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CHECKSUM = 0x8000
KEY = 0x2000
SEQUENCE = 0x1000
VERSION_MASK = 0x0007
RESERVED0_MASK = 0x4FF8  # bit 1 (routing, RFC 1701) and the reserved bits: must be zero (RFC 2784)
IPV4, IPV6 = 0x0800, 0x86DD
PROTOCOL = 47  # GRE's IP protocol number


def overhead(*, key: bool, checksum: bool) -> int:
    """Bytes the GRE header adds to a packet (the outer IPv4 header not counted)."""
    return 4 + (4 if key else 0) + (4 if checksum else 0)


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071's checksum. The ones'-complement sum of 16-bit words is the number they form modulo 0xFFFF
    (2**16 = 1 modulo 0xFFFF), so one big-integer remainder does the whole sum in C."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    total = int.from_bytes(raw, "big") % 0xFFFF
    if total == 0 and any(raw):
        total = 0xFFFF  # a non-zero sum that wrapped is 0xFFFF in ones' complement, never 0
    return ~total & 0xFFFF


def header(protocol: int, *, key: int | None, checksum: bool, payload: bytes | memoryview = b"") -> bytes:
    """The GRE header for one packet; with `checksum` it covers `payload`, which then must be given."""
    flags = (CHECKSUM if checksum else 0) | (KEY if key is not None else 0)
    out = struct.pack("!HH", flags, protocol)
    if checksum:
        out += b"\0\0\0\0"
    if key is not None:
        out += struct.pack("!I", key)
    if checksum:
        value = internet_checksum(out + bytes(payload))
        out = out[:4] + struct.pack("!H", value) + out[6:]
    return out


@dataclass(frozen=True, slots=True)
class Parsed:
    protocol: int
    key: int | None
    offset: int  # where the payload begins


class Malformed(ValueError):
    """Not a GRE packet this datapath accepts (the reason is the message)."""


def parse(packet: bytes | memoryview, start: int = 0) -> Parsed:
    """The GRE header at `packet[start:]`. Raises Malformed for a version other than 0, reserved bits set,
    a header longer than the packet, or a checksum that does not verify."""
    if len(packet) - start < 4:
        raise Malformed("shorter than a GRE header")
    flags, protocol = struct.unpack_from("!HH", packet, start)
    if flags & VERSION_MASK:
        raise Malformed(f"GRE version {flags & VERSION_MASK}")
    if flags & RESERVED0_MASK:
        raise Malformed("reserved GRE flags set")
    offset = start + 4
    if flags & CHECKSUM:
        offset += 4
    key = None
    if flags & KEY:
        if len(packet) < offset + 4:
            raise Malformed("truncated key")
        (key,) = struct.unpack_from("!I", packet, offset)
        offset += 4
    if flags & SEQUENCE:
        offset += 4
    if len(packet) < offset:
        raise Malformed("truncated GRE header")
    if flags & CHECKSUM and internet_checksum(memoryview(packet)[start:]) != 0:
        raise Malformed("bad GRE checksum")
    return Parsed(protocol, key, offset)


def inner_protocol(packet: bytes | memoryview) -> int:
    """The EtherType of an IP packet read from a TUN device, by its version nibble."""
    return IPV6 if packet[0] >> 4 == 6 else IPV4
