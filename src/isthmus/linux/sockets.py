"""A listening TCP socket inside another network namespace (the socket stays there; the process does not)."""

from __future__ import annotations

import ctypes
import os
import socket
from ipaddress import ip_address

from isthmus.linux.run import NETNS_DIR

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def socket_in(
    netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A socket of `netns`, usable from this process. Call while this thread's namespace may move briefly."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"{NETNS_DIR}/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, kind, proto)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """Bind and listen on host:port in `netns` (the socket stays there; the process does not)."""
    family = socket.AF_INET6 if ip_address(host).version == 6 else socket.AF_INET
    sock = socket_in(netns, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listen_here(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock
