"""The userspace datapath's GRE header against RFC 2784/2890, and against scapy's independent encoding."""

from __future__ import annotations

import struct
from ipaddress import ip_address, ip_interface, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from isthmus.linux import gre_wire
from isthmus.linux.gre import GreTunnel, tunnel_of
from isthmus.linux.nat_nft import compartment_guard
from isthmus.model.documents import Connection, GreSettings

keys = st.none() | st.integers(min_value=0, max_value=2**32 - 1)
payloads = st.binary(min_size=1, max_size=300).map(lambda b: bytes([0x45]) + b)  # an IPv4 version nibble


def _reference_checksum(data: bytes) -> int:
    """RFC 1071 word by word, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=200))
def test_the_checksum_is_rfc_1071s(data: bytes) -> None:
    assert gre_wire.internet_checksum(data) == _reference_checksum(data)


@given(keys, st.booleans(), payloads)
def test_our_header_is_scapys_and_parses_back(key: int | None, checksum: bool, payload: bytes) -> None:
    ours = gre_wire.header(gre_wire.IPV4, key=key, checksum=checksum, payload=payload) + payload
    theirs = GRE(proto=0x0800)
    if key is not None:
        theirs.key_present, theirs.key = 1, key
    if checksum:
        theirs.chksum_present = 1
    assert ours == bytes(theirs / Raw(payload))
    parsed = gre_wire.parse(ours)
    assert (parsed.protocol, parsed.key, ours[parsed.offset :]) == (gre_wire.IPV4, key, payload)
    assert len(ours) - len(payload) == gre_wire.overhead(key=key is not None, checksum=checksum)


@given(keys, payloads, st.integers(min_value=0, max_value=7))
def test_a_corrupted_checksummed_packet_is_refused(key: int | None, payload: bytes, bit: int) -> None:
    packet = bytearray(gre_wire.header(gre_wire.IPV4, key=key, checksum=True, payload=payload) + payload)
    packet[-1] ^= 1 << bit
    with pytest.raises(gre_wire.Malformed, match="checksum"):
        gre_wire.parse(bytes(packet))


@pytest.mark.parametrize(
    ("flags", "why"),
    [(0x0001, "version 1"), (0x4000, "reserved"), (0x0080, "reserved"), (0x2000, "truncated key")],
)
def test_what_rfc_2784_forbids_or_a_short_header_is_refused(flags: int, why: str) -> None:
    with pytest.raises(gre_wire.Malformed, match=why):
        gre_wire.parse(struct.pack("!HH", flags, 0x0800))


def test_the_offset_skips_an_outer_ip_header() -> None:
    outer = bytes([0x45]) + bytes(19)
    packet = outer + gre_wire.header(gre_wire.IPV6, key=9, checksum=False) + b"\x60payload"
    parsed = gre_wire.parse(packet, 20)
    assert (parsed.protocol, parsed.key, packet[parsed.offset :]) == (gre_wire.IPV6, 9, b"\x60payload")


def test_the_tunnel_mtu_leaves_room_for_the_outer_headers_on_a_1500_byte_path() -> None:
    plain = GreTunnel("gt0", "198.51.100.1", None, False, None, ())
    assert plain.mtu == 1476
    assert GreTunnel("gt0", "198.51.100.1", 7, True, None, ()).mtu == 1468


def test_the_compartment_admits_gre_only_from_its_sites() -> None:
    body = compartment_guard("203.0.113.9", ["198.51.100.2", "198.51.100.1", "198.51.100.2"])
    assert "ip daddr 203.0.113.9 ip saddr { 198.51.100.1, 198.51.100.2 } ip protocol gre accept" in body
    assert "gre" not in compartment_guard("203.0.113.9")


def _connection(remote: str | None) -> Connection:
    return Connection("/subscriptions/s/connections/c1", "GRE", ip_address(remote) if remote else None,
                      (ip_network("192.0.2.0/26"), ip_network("2001:db8::/64")), None, None, (), None, None,
                      GreSettings(7, ip_interface("198.19.0.1/30"), None, True), None, False)  # fmt: skip


def test_a_gre_connection_becomes_a_tunnel_unless_it_has_no_remote_endpoint() -> None:
    assert tunnel_of(_connection(None)) is None
    tunnel = tunnel_of(_connection("198.51.100.7"))
    assert tunnel == GreTunnel(tunnel.device if tunnel else "", "198.51.100.7", 7, True, "198.19.0.1/30",
                               ("192.0.2.0/26",))  # fmt: skip
    assert tunnel is not None and tunnel.device.startswith("gt") and len(tunnel.device) <= 15
