"""Addresses as `ipaddress` objects, and how pydantic reads and writes them: the one place text becomes an
address (and back) on either side of the agent protocol."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_interface,
    ip_network,
)
from ipaddress import ip_address as _ip_address
from typing import Annotated, Any, TypeVar

from pydantic import PlainSerializer, PlainValidator

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Interface = IPv4Interface | IPv6Interface


def parse_address(text: str) -> Address:
    """An address from its text: the socket module's C parser, then the integer constructor (a third of the
    cost of parsing the text in Python, which 100,000 public IPs make worth it)."""
    try:
        return IPv4Address(int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"))
    except OSError:
        pass
    try:
        return IPv6Address(int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big"))
    except OSError:
        return _ip_address(text)  # its error message; or a form inet_pton refuses but ipaddress takes


@lru_cache(maxsize=65536)
def parse_network(text: str) -> Network:
    """A prefix (no host bits set); cached, as documents and NSG programs repeat the same few prefixes."""
    return ip_network(text)


def parse_host_route(text: str) -> Address:
    """A VIP written as its /32 (/128), or as the bare address."""
    bare, _slash, length = text.partition("/")
    vip = parse_address(bare)
    if length and length != str(vip.max_prefixlen):
        raise ValueError(f"{text!r} is not a /32 or /128")
    return vip


def host_route_text(vip: Address) -> str:
    return f"{vip}/{vip.max_prefixlen}"


T = TypeVar("T")


def _reader(types: tuple[type, ...], parse: Callable[[str], T], what: str) -> Callable[[object], T]:
    """pydantic's validator: an object of `types` as it is, text through `parse`, anything else refused.
    (One call per value: pydantic's own union of the two IP versions parses each value twice.)"""

    def read(value: object) -> Any:
        if isinstance(value, types):
            return value
        if isinstance(value, str):
            return parse(value)
        raise ValueError(f"{value!r} is not {what}")

    return read


_TEXT = PlainSerializer(str, return_type=str)
IPAddress = Annotated[
    Address, PlainValidator(_reader((IPv4Address, IPv6Address), parse_address, "an IP address")), _TEXT
]
IPNetwork = Annotated[
    Network, PlainValidator(_reader((IPv4Network, IPv6Network), parse_network, "an IP prefix")), _TEXT
]
IPInterface = Annotated[
    Interface, PlainValidator(_reader((IPv4Interface, IPv6Interface), ip_interface, "an address with a prefix")), _TEXT
]
# A VIP is an address; on the wire it is its host route ("203.0.113.5/32"), as BGP announces it.
HostRoute = Annotated[
    Address,
    PlainValidator(_reader((IPv4Address, IPv6Address), parse_host_route, "a host route")),
    PlainSerializer(host_route_text, return_type=str),
]
